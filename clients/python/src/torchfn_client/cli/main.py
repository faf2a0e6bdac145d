"""``torchfn``: the service from the shell.

Exit status: 0 success; 2 a usage error (bad arguments, unreadable files); 4 the service refused
the request (4xx); 5 the service failed or could not be reached (5xx, connection, timeout).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from torchfn_client.cli import render
from torchfn_client.cli.files import UsageError, read_tensor, write_arrays
from torchfn_client.client import DEFAULT_TIMEOUT_S, Client
from torchfn_client.errors import APIError, ClientError, TransportError

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_REFUSED = 4
EXIT_FAILED = 5

DEFAULT_URL = "http://localhost:8000"

_EPILOG = f"""\
The service is named by --url, else the TORCHFN_URL environment variable, else {DEFAULT_URL};
the API key by --api-key, else TORCHFN_API_KEY. Tensor files are .npy, .npz, .json (a number,
a nested list, or the service's tensor object), or - for JSON on stdin. Output is a table on a
terminal and JSON otherwise (or with --json).

exit status: 0 success, 2 usage error, 4 refused by the service (4xx), 5 service failure,
connection error or timeout (5xx)."""


def _connection_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """The options every command takes, accepted before or after the command's name."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--url", default=default(None), help="the service's base URL (default: $TORCHFN_URL)")
    parser.add_argument("--api-key", default=default(None), help="sent as a bearer token (default: $TORCHFN_API_KEY)")
    parser.add_argument("--timeout", type=float, default=default(DEFAULT_TIMEOUT_S), help="seconds per attempt")
    parser.add_argument("--retries", type=int, default=default(3), help="tries again after a 503 (default 3)")
    parser.add_argument("--cacert", default=default(None), help="CA bundle to verify the server's certificate with")
    parser.add_argument(
        "--insecure", action="store_true", default=default(False), help="do not verify the server's certificate"
    )
    parser.add_argument("--json", action="store_true", default=default(False), help="print JSON even on a terminal")


def _tensor_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--param", action="append", default=[], metavar="K=V", help="a parameter (V as JSON, else text)"
    )
    parser.add_argument("--grad", action="store_true", help="also compute gradients")
    parser.add_argument("--grad-output", metavar="FILE", help="weights of the vector-Jacobian product")
    parser.add_argument("--dtype", choices=["float32", "float64", "float16", "bfloat16"], help="compute dtype")
    parser.add_argument("--out", metavar="FILE", help="write the result to an .npy, .npz or .json file")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    _connection_options(common, suppress=True)
    parser = argparse.ArgumentParser(
        prog="torchfn",
        description="Call the torch functions service: every torch.nn activation and loss, with gradients.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _connection_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("functions", parents=[common], help="list the catalogue")
    listing.add_argument("--kind", choices=["activation", "loss"], help="only activations or only losses")

    one = commands.add_parser("function", parents=[common], help="describe one function and its parameters")
    one.add_argument("name")

    activate = commands.add_parser("activate", parents=[common], help="apply an activation function")
    activate.add_argument("name")
    activate.add_argument("--input", required=True, metavar="FILE", help="the input tensor")
    _tensor_options(activate)

    loss = commands.add_parser("loss", parents=[common], help="compute a loss function")
    loss.add_argument("name")
    loss.add_argument("--input", metavar="FILE", help="the input tensor")
    loss.add_argument("--target", metavar="FILE", help="the target tensor")
    loss.add_argument(
        "--tensor", action="append", default=[], metavar="NAME=FILE", help="another tensor argument (var, anchor...)"
    )
    loss.add_argument("--activation", metavar="NAME", help="an activation applied to the input first")
    loss.add_argument(
        "--activation-param",
        action="append",
        default=[],
        metavar="K=V",
        help="a parameter of the --activation (V as JSON, else text)",
    )
    _tensor_options(loss)
    return parser


def _parse_param(text: str, option: str = "--param") -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"{option} {text!r}: expected K=V")
    if value.startswith("@"):
        return key, read_tensor(value[1:], key)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _stdin_once(specs: Sequence[str | None]) -> None:
    if sum(spec == "-" for spec in specs) > 1:
        raise UsageError("only one tensor can be read from stdin (-)")


def _client(args: argparse.Namespace) -> Client:
    verify: bool | str = False if args.insecure else (args.cacert or True)
    return Client(
        args.url or os.environ.get("TORCHFN_URL") or DEFAULT_URL,
        api_key=args.api_key or os.environ.get("TORCHFN_API_KEY") or None,
        timeout=args.timeout,
        verify=verify,
        max_retries=args.retries,
    )


def _print(document: Any, text: str, as_json: bool) -> None:
    print(json.dumps(document) if as_json else text)


def _run(args: argparse.Namespace) -> None:
    as_json = args.json or not sys.stdout.isatty()
    with _client(args) as client:
        if args.command == "functions":
            infos = client.functions(args.kind)
            _print(render.functions_document(infos), render.functions_table(infos), as_json)
        elif args.command == "function":
            info = client.function(args.name)
            _print(render.function_document(info), render.function_table(info), as_json)
        elif args.command == "activate":
            _stdin_once([args.input, args.grad_output])
            params = dict(_parse_param(p) for p in args.param)
            grad_output = read_tensor(args.grad_output, "grad_output") if args.grad_output else None
            result = client.activate(
                args.name, read_tensor(args.input, "input"), args.grad, params, grad_output, args.dtype
            )
            document = render.activation_document(result)
            if args.out:
                arrays = {"output": result.output, **({"grad": result.grad} if result.grad is not None else {})}
                write_arrays(args.out, arrays, document)
            if not args.out or not as_json:
                _print(document, render.activation_table(result, args.out), as_json)
        else:
            _loss(client, args, as_json)


def _loss(client: Client, args: argparse.Namespace, as_json: bool) -> None:
    named = [_split_tensor(spec) for spec in args.tensor]
    _stdin_once([args.input, args.target, args.grad_output, *(path for _, path in named)])
    params = dict(_parse_param(p) for p in args.param)
    activation_params = dict(_parse_param(p, "--activation-param") for p in args.activation_param)
    if activation_params and not args.activation:
        raise UsageError("--activation-param needs --activation NAME")
    activation = {"function": args.activation, "params": activation_params} if activation_params else args.activation
    result = client.loss(
        args.name,
        read_tensor(args.input, "input") if args.input else None,
        read_tensor(args.target, "target") if args.target else None,
        grad=args.grad,
        params=params,
        inputs={name: read_tensor(path, name) for name, path in named} or None,
        activation=activation,
        grad_output=read_tensor(args.grad_output, "grad_output") if args.grad_output else None,
        dtype=args.dtype,
    )
    document = render.loss_document(result)
    if args.out:
        grads = {f"grad_{name}": g for name, g in (result.grad or {}).items()}
        write_arrays(args.out, {"loss": result.loss, **grads}, document)
    if not args.out or not as_json:
        _print(document, render.loss_table(result, args.out), as_json)


def _split_tensor(spec: str) -> tuple[str, str]:
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise UsageError(f"--tensor {spec!r}: expected NAME=FILE")
    return name, path


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # exits 2 on a usage error, as argparse does
    try:
        _run(args)
    except UsageError as error:
        print(f"torchfn: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (TypeError, ValueError) as error:  # arguments the client refuses before sending
        print(f"torchfn: {error}", file=sys.stderr)
        return EXIT_USAGE
    except APIError as error:
        print(render.error_text(error), file=sys.stderr)
        return EXIT_REFUSED if isinstance(error, ClientError) else EXIT_FAILED
    except TransportError as error:
        print(f"torchfn: {error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
