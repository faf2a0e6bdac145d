import numpy as np, orjson
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup": await send({"type": "lifespan.startup.complete"})
            elif m["type"] == "lifespan.shutdown": await send({"type": "lifespan.shutdown.complete"}); return
    m = await receive()
    obj = orjson.loads(m["body"])
    x = np.asarray(obj["input"], dtype=np.float32)
    y = np.maximum(x, 0)
    out = orjson.dumps({"function": "relu", "output": y, "shape": list(y.shape), "dtype": "float32"}, option=orjson.OPT_SERIALIZE_NUMPY)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(out)).encode()), (b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": out})
