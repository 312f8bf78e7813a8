"""The example resource: create, read and list items, validated with marshmallow (it comes with environs)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import EXCLUDE, Schema, fields, validate
from sqlalchemy import Row, bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.exceptions import HTTPException
from starlette.requests import Request

from ..jobs.outbox import INSERT_JOB, job_inserted_with, job_row, record_job
from ..jobs.tasks import PROCESS_ITEM
from ..logs import request_id
from ..models import Item, ItemStatus, OutboxJob
from .payloads import json_body, plain_text
from .resources import Resources
from .responses import ORJSONResponse

# PostgreSQL's BIGINT: a larger id is a 404, not a database error.
MAX_ID = 2**63 - 1

# Core statements built once: for a single row the ORM costs more than the query (bench/PROFILE.md).
ITEM_BY_ID = select(Item.__table__).where(Item.id == bindparam("item_id"))
ITEMS_AFTER = (
    select(Item.__table__).where(Item.id > bindparam("after")).order_by(Item.id).limit(bindparam("limit"))
)
INSERT_ITEM = insert(Item).returning(*Item.__table__.columns)
NEW_ITEM = INSERT_ITEM.values(name=bindparam("name"), status=ItemStatus.PENDING).cte("new_item")
INSERT_ITEM_WITH_JOB = select(NEW_ITEM, job_inserted_with(NEW_ITEM.c.id).label("job_id"))


class NewItem(Schema):
    name = fields.String(required=True, validate=[validate.Length(min=1, max=200), plain_text])


class ListQuery(Schema):
    class Meta:
        # Ignore unknown query parameters, such as cache-busters.
        unknown = EXCLUDE

    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    after = fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_ID))


def item_json(item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": item["id"],
        "name": item["name"],
        # An ItemStatus through SQLAlchemy, its text straight from the driver.
        "status": str(item["status"]),
        "digest": item["digest"],
        "created_at": item["created_at"].isoformat(),
        "updated_at": item["updated_at"].isoformat(),
    }


async def items_collection(request: Request) -> ORJSONResponse:
    """`/items`: POST creates an item, GET (and HEAD) lists them."""
    if request.method == "POST":
        return await create_item(request)
    return await list_items(request)


async def create_item(request: Request) -> ORJSONResponse:
    resources: Resources = request.state.resources
    data = NewItem().load(await json_body(request))

    # Its one argument, the item's id, comes with the insert.
    job = record_job(PROCESS_ITEM, [], request_id.get())
    item = await insert_item_with_job(resources.engine, data["name"], job)
    # After the commit, so the worker finds the item.
    await resources.jobs.publish(job)
    return ORJSONResponse(
        item_json(dict(item._mapping)), status_code=201, headers={"Location": f"/items/{item.id}"}
    )


async def insert_item_with_job(engine: AsyncEngine, name: str, job: OutboxJob) -> Row[Any]:
    """Insert the item and, atomically with it, its job (if the item exists, so does its job)."""
    if engine.dialect.name != "postgresql":
        # SQLite (the zero-server run) has no INSERT in a WITH clause: two statements in a transaction.
        async with engine.begin() as connection:
            item = (await connection.execute(INSERT_ITEM, {"name": name})).one()
            job.args = [item.id]
            job.id = (await connection.execute(INSERT_JOB, job_row(job))).scalar_one()
        return item
    # One statement is atomic on its own: no BEGIN and COMMIT round trips.
    async with engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        item = (await autocommit.execute(INSERT_ITEM_WITH_JOB, {"name": name, **job_row(job)})).one()
    job.id, job.args = item.job_id, [item.id]
    return item


def item_id_of(segment: str) -> int:
    """The id in an item's path; 404 for anything that cannot be a stored id.

    Starlette's `int` convertor would make a 500 of thousands of digits (Python refuses such integers).
    """
    if (
        not (segment.isascii() and segment.isdigit())
        or len(segment) > len(str(MAX_ID))
        or int(segment) > MAX_ID
    ):
        raise HTTPException(404, f"No item with id {segment[:40]}.")
    return int(segment)


async def get_item(request: Request) -> ORJSONResponse:
    resources: Resources = request.state.resources
    item_id = item_id_of(request.path_params["item_id"])
    item = await resources.reads.first(ITEM_BY_ID, item_id=item_id)
    if item is None:
        raise HTTPException(404, f"No item with id {item_id}.")
    return ORJSONResponse(item_json(item))


async def list_items(request: Request) -> ORJSONResponse:
    """Keyset pagination: `?after=<last id seen>&limit=<n>`, stable while items are being added."""
    resources: Resources = request.state.resources
    query = ListQuery().load(request.query_params)
    items = await resources.reads.all(ITEMS_AFTER, after=query["after"], limit=query["limit"])
    next_page = None
    if len(items) == query["limit"]:
        next_page = f"/items?after={items[-1]['id']}&limit={query['limit']}"
    return ORJSONResponse({"items": [item_json(item) for item in items], "next": next_page})
