"""The one road of every compute request, whatever its protocol and its transport.

``Road.serve`` takes a request from admission to reply: what its path names is resolved and the
queue's room checked before a byte of its body is read; the request holds its share of the
memory budget from its first byte to its reply; the body is read within its limits, decoded (in a
thread when large), computed within its deadline (its estimated cost checked first) and encoded.
A protocol contributes its ``Codec``; a transport hands the road the request's metadata and its
body as it arrives, and writes the reply. Nothing here knows HTTP or gRPC: a fix reaches every
protocol on every transport.
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple

from app.compute.batching import GoneProbe, Served
from app.compute.jobs import Result
from app.compute.service import ComputeService
from app.core.config import Settings
from app.core.request_context import current_request
from app.serving.apart import ParseProcess
from app.serving.body import BodySource, read_body
from app.serving.codec import Codec, DecodedT, DecodeOptions, Encoded, RequestMeta
from app.telemetry.request_trace import current_trace


class Reply(NamedTuple):
    """What the road hands back to the transport: the encoded reply and how it was served."""

    encoded: Encoded
    served: Served[Result]


class Road:
    """Built once per server process by its lifespan, shared by every transport."""

    def __init__(self, compute: ComputeService, options: DecodeOptions, settings: Settings) -> None:
        self.compute = compute
        self.options = options
        self.settings = settings
        self.parser = ParseProcess()

    def close(self) -> None:
        """Stop the parse process (the app's lifespan, at shutdown)."""
        self.parser.close()

    async def serve(
        self,
        codec: Codec[DecodedT],
        meta: RequestMeta,
        source: BodySource,
        path: tuple[str, ...] = (),
        gone: GoneProbe | None = None,
    ) -> Reply:
        """Serve one request; every refusal is a ``ServiceError`` (``app.core.errors``).
        ``path``: what the transport's path names, in order (the model and its version);
        ``gone``: asks whether the client is still there, for a request that has queued a while."""
        compute, options, settings = self.compute, self.options, self.settings
        facts = current_request.get()
        subject = codec.subject(options, path)
        if facts is not None and subject is not None:
            facts.function = subject.name
        codec.check(meta)
        compute.admit()
        inline = settings.inline_decode_bytes
        memory = compute.memory.reservation()
        trace = current_trace.get()  # tracing: the request's trace when it is traced, else None
        if trace is not None:  # tracing: reading begins
            trace.entered()
        try:
            body = await read_body(source, meta, settings, memory)
            if trace is not None:  # tracing
                trace.read()
            text = codec.parsed_text(body, meta)
            # Small payloads are decoded and encoded on the loop; large ones in a thread, so that
            # the loop stays responsive, and large JSON texts are parsed in the parse process
            # (``apart.py``), whose parse would otherwise hold the interpreter lock throughout. A
            # small body's parse (at most ~1 MiB) is not held in the budget: being on the loop, one
            # runs at a time.
            if len(text) <= inline:
                decoded = codec.decode(body, meta, subject, options)
            else:
                hold = codec.decoding_bytes(body, text)
                if not memory.resize_now(hold):
                    await memory.resize(hold, settings.memory_wait_s, ("body",), "parsing the body")
                parsed = None
                parse_apart = codec.parse_apart
                if parse_apart is not None and len(text) > settings.parse_apart_bytes:
                    parsed = await self.parser.parse(parse_apart, text, options.limits)
                decoded = await asyncio.to_thread(codec.decode, body, meta, subject, options, parsed)
                del parsed
            del text
            del body
            job = decoded.job
            if facts is not None:
                facts.function = job.spec.name
            if trace is not None:  # tracing
                trace.decoded(job)
            served = await compute.run(job, meta.timeout, gone, memory)
            if trace is not None:  # tracing
                trace.computed()
            if codec.reply_bytes(decoded) > inline:
                encoded = await asyncio.to_thread(codec.encode, decoded, served.result)
            else:
                encoded = codec.encode(decoded, served.result)
            if trace is not None:  # tracing
                trace.encoded()
        finally:
            memory.release()
        return Reply(encoded, served)
