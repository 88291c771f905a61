"""The series definitions as a Faust global table on the compacted series topic.

Every worker replays the whole topic (one partition) before its agents start, and keeps reading
it: records apply to a ``SeriesCatalog`` in offset order, so every worker agrees on which
definition of a name came first. Records are written only by ``publish`` (a ``series_define``
request, or a configured series at start); they reach the catalog, the writer's included, when
they come back from the topic, never before, so no worker sees its own write ahead of an
earlier one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaProducer
from faust.tables.objects import ChangeloggedObject, ChangeloggedObjectManager
from faust.tables.table import Table
from faust.types import TP, EventT
from faust.types.tables import GlobalTableT
from yarl import URL

from pipeline.core.series import SeriesCatalog, SeriesDef, definition_record, read_definition_record

__all__ = ["SeriesTable", "SeriesDefinitions"]

log = logging.getLogger(__name__)

_CATALOG_KEY = "catalog"


class _CatalogObject(ChangeloggedObject):
    """The catalog as the table's one changelogged object (records applied by the manager)."""

    def __post_init__(self) -> None:
        self.catalog: SeriesCatalog = self.manager.new_catalog()  # type: ignore[attr-defined]

    def sync_from_storage(self, value: Any) -> None:
        """Never replaced from storage: the live catalog is the newest."""

    def as_stored_value(self) -> Any:
        return self.catalog

    def apply_changelog_event(self, operation: int, value: Any) -> None:
        raise NotImplementedError("records are applied by SeriesDefinitions.apply_changelog_batch")


class SeriesDefinitions(ChangeloggedObjectManager):
    """Store of the series table: definition records into the catalog, in offset order."""

    ValueType = _CatalogObject
    new_catalog: Callable[[], SeriesCatalog]

    def __init__(self, table: Table, **kwargs: Any) -> None:
        super().__init__(table, **kwargs)
        self.url = URL(f"series-definitions://{self.table_name}")
        self._advanced = asyncio.Condition()

    @property
    def catalog(self) -> SeriesCatalog:
        catalog: SeriesCatalog = self[_CATALOG_KEY].catalog  # type: ignore[attr-defined]
        return catalog

    async def on_start(self) -> None:
        """Nothing to start: no Faust storage behind the catalog."""

    def persisted_offset(self, tp: TP) -> int | None:
        return None  # always replayed whole: the topic is compacted and small

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        """Ignored: Faust calls it when a write is sent; only what was read back counts."""

    def reset_state(self) -> None:
        """Ignored: definitions are never dropped by a rebalance."""

    async def on_rebalance(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Nothing to do: every worker reads the whole topic (global table)."""

    def sync_from_storage(self) -> None:
        """Nothing is kept in Faust's storage."""

    def apply_changelog_batch(
        self, batch: Iterable[EventT], to_key: Callable[[Any], Any], to_value: Callable[[Any], Any]
    ) -> None:
        catalog = self.catalog
        for event in batch:
            offset = event.message.offset
            if offset <= catalog.position:
                continue
            try:
                catalog.apply(offset, read_definition_record(event.message.value))
            except ValueError as exc:
                log.error("series record %d is not a definition (%s); skipped", offset, exc)
                catalog.position = offset
        asyncio.ensure_future(self._notify())

    async def _notify(self) -> None:
        async with self._advanced:
            self._advanced.notify_all()

    async def read_past(self, offset: int, timeout_s: float) -> bool:
        """Wait until the catalog has read the record at ``offset`` (False: not within the time)."""
        async with self._advanced:
            try:
                await asyncio.wait_for(self._advanced.wait_for(lambda: self.catalog.position >= offset), timeout_s)
            except TimeoutError:
                return False
        return True

    async def publish(self, producer: AIOKafkaProducer, definition: SeriesDef) -> SeriesDef:
        """Write ``definition`` and return the one that counts once the catalog has read it back."""
        key, value = definition_record(definition)
        topic = self.table.changelog_topic.get_topic_name()
        metadata = await producer.send_and_wait(topic, value, key=key, partition=0)
        if not await self.read_past(metadata.offset, 10.0):
            raise TimeoutError(f"series definition {definition} was written but not read back within 10 s")
        winner = self.catalog.get(definition.name)
        assert winner is not None
        return winner


class SeriesTable(Table, GlobalTableT):  # type: ignore[misc]
    """A global table of one catalog on the compacted series topic."""

    def __init__(self, *args: Any, new_catalog: Callable[[], SeriesCatalog], **kwargs: Any) -> None:
        self._new_catalog = new_catalog
        super().__init__(*args, **kwargs)

    def _changelog_topic_name(self) -> str:
        return self.changelog_topic.get_topic_name()

    def _new_store(self) -> SeriesDefinitions:
        manager = SeriesDefinitions(self)
        manager.new_catalog = self._new_catalog
        return manager

    @property
    def manager(self) -> SeriesDefinitions:
        return self.data  # type: ignore[return-value]
