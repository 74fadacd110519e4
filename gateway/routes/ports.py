"""Preview URLs of a box's ports: open one (with its token, password, or public), list, close.
The preview listener (gateway/preview.py) serves them; core/previews.py keeps them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from core.errors import ApiError
from core.previews import PortRecord, PreviewOrigin, Previews
from gateway.deps import CoreDep, OwnedBoxDep, PoliciesDep, UserDep
from gateway.schemas import ErrorOut, PortCreate, PortPublic

router = APIRouter(prefix="/v1/boxes/{box_id}/ports", tags=["ports"],
                   responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut},
                              404: {"model": ErrorOut}, 503: {"model": ErrorOut}})

PortPath = Annotated[int, Path(ge=1, le=65535)]


class _Ports:
    def __init__(self, previews: Previews, origin: PreviewOrigin) -> None:
        self.previews = previews
        self.origin = origin

    def public(self, record: PortRecord, token: str | None = None,
               password: str | None = None) -> PortPublic:
        return PortPublic(port=record.port, url=self.origin.url(record.box_id, record.port),
                          auth=record.auth, created_at=record.created_at, token=token,
                          username=record.username, password=password)


async def _ports(core: CoreDep) -> _Ports:
    origin = PreviewOrigin.of(core.settings)
    if origin is None:
        raise ApiError(503, "unavailable", "previews are off on this server: the operator sets "
                                           "BURROW_PREVIEW_LISTEN (or BURROW_PREVIEW_URL)")
    return _Ports(Previews(core.redis, core.keys, core.secret), origin)


PortsDep = Annotated[_Ports, Depends(_ports)]


@router.post("", status_code=201, responses={409: {"model": ErrorOut},
                                             422: {"model": ErrorOut}})
async def open_port(body: PortCreate, box: OwnedBoxDep, who: UserDep, ports: PortsDep,
                    policies: PoliciesDep) -> PortPublic:
    """Open a preview URL for a port of the box. A request to it wakes a frozen box. Opening
    an open port again gives it a new token (or password): the old one, and the cookies
    browsers made of it, stop working."""
    if body.auth == "public" and not who.is_operator:
        policy = await policies.for_tenant(box.owner)
        if not policy.allow_public_ports:
            raise ApiError(403, "forbidden", "public ports are not allowed for this tenant "
                           "(the operator's policy allow_public_ports is off); open the port "
                           "with auth \"bearer\" or \"basic\"")
    opened = await ports.previews.open(box.id, box.owner, body.port, body.auth,
                                       body.username, body.password)
    return ports.public(opened.record, opened.token, opened.password)


@router.get("")
async def list_ports(box: OwnedBoxDep, ports: PortsDep) -> list[PortPublic]:
    """The box's open ports (their tokens are shown only when opened)."""
    return [ports.public(r) for r in await ports.previews.list(box.id)]


@router.get("/{port}")
async def get_port(port: PortPath, box: OwnedBoxDep, ports: PortsDep) -> PortPublic:
    record = await ports.previews.get(box.id, port)
    if record is None:
        raise ApiError(404, "not_found", f"port {port} of box {box.id} is not open; open it "
                                         "with POST /v1/boxes/{id}/ports")
    return ports.public(record)


@router.delete("/{port}", status_code=204)
async def close_port(port: PortPath, box: OwnedBoxDep, ports: PortsDep) -> Response:
    """Close the port: its URL, token and cookies open nothing from now on."""
    if not await ports.previews.close(box.id, port):
        raise ApiError(404, "not_found", f"port {port} of box {box.id} is not open")
    return Response(status_code=204)
