from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
REPLY = b'{"ok":true}'
async def activate(request: Request) -> Response:
    await request.body()
    return Response(REPLY, media_type="application/json")
app = Starlette(routes=[Route("/activate", activate, methods=["POST"])])
