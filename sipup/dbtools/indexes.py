"""The indexes step: the indexes of the database checked against the models; missing ones created,
redundant and unused ones named."""

from sqlalchemy import inspect
from sqlalchemy.schema import CreateIndex

from sipup.dbtools.statements import StepFailed
from sipup.extensions import db


class IndexSteps:
    """The indexes step of the Optimizer."""

    def live_indexes(self, table):
        """{name: (columns, unique)} as the database has them, the primary key included."""
        inspector = inspect(self.conn)
        found = {ix["name"]: (tuple(ix["column_names"]), bool(ix["unique"])) for ix in inspector.get_indexes(table)}
        for uq in inspector.get_unique_constraints(table):
            found.setdefault(uq["name"], (tuple(uq["column_names"]), True))
        pk = inspector.get_pk_constraint(table)
        if pk["constrained_columns"]:
            found["PRIMARY"] = (tuple(pk["constrained_columns"]), True)
        return found

    def check_indexes(self):
        """Create the indexes the models declare and the database lacks; report odd and redundant ones."""
        inspector = inspect(self.conn)
        missing_tables = [t.name for t in db.metadata.sorted_tables if not inspector.has_table(t.name)]
        if missing_tables:
            raise StepFailed(f"tables missing: {', '.join(missing_tables)}; run `flask db upgrade` first")
        lines = []
        for table in db.metadata.sorted_tables:
            live = self.live_indexes(table.name)
            declared = {ix.name: ix for ix in table.indexes}
            for name, index in sorted(declared.items()):
                columns = tuple(c.name for c in index.columns)
                if name not in live:
                    self.echo(f"  {table.name}: {name} {columns} is missing")
                    self.change(str(CreateIndex(index).compile(dialect=self.engine.dialect)).strip())
                elif live[name][0] != columns:
                    self.out.warnings.append(
                        f"{table.name}.{name} is on {live[name][0]} but the models say "
                        f"{columns}: drop it and run again to rebuild it"
                    )
            known = set(declared) | {c.name for c in table.constraints if c.name}
            for name, (columns, _unique) in live.items():
                if name != "PRIMARY" and name not in known and not self._constraint_index(table, columns):
                    lines.append(f"{table.name}.{name} {columns} is not declared with the models")
            lines.extend(self._redundant(table.name, live))
        lines.extend(self._unused())
        self.out.sections.append(("Index check", lines or ["every declared index exists; none redundant"]))

    @staticmethod
    def _constraint_index(table, columns):
        """MySQL indexes a foreign key by itself when no index starts with its columns."""
        return any(tuple(c.parent.name for c in fk.elements) == columns for fk in table.foreign_key_constraints)

    @staticmethod
    def _redundant(table, live):
        """Non-unique indexes whose columns begin another index: the longer one serves their queries."""
        found = []
        for name, (columns, unique) in live.items():
            if unique:
                continue
            for other, (other_columns, _u) in live.items():
                if (
                    other != name
                    and other_columns[: len(columns)] == columns
                    and (len(other_columns) > len(columns) or other < name)
                ):
                    found.append(f"{table}.{name} {columns} is redundant: {other} {other_columns} covers it")
                    break
        return found

    def _unused(self):
        if not self.mysql:
            return ["unused indexes: SQLite keeps no index usage statistics (skipped)"]
        variables = dict(self.rows("SHOW VARIABLES WHERE Variable_name IN ('userstat', 'performance_schema')"))
        tables = [t.name for t in db.metadata.sorted_tables]
        if variables.get("userstat") == "ON":
            used = {
                (t, i)
                for t, i in self.rows(
                    "SELECT TABLE_NAME, INDEX_NAME FROM information_schema.INDEX_STATISTICS WHERE TABLE_SCHEMA = "
                    "DATABASE()"
                )
            }
            source = "userstat, since the server started or statistics were flushed"
        elif variables.get("performance_schema") == "ON":
            used = {
                (t, i)
                for t, i in self.rows(
                    "SELECT OBJECT_NAME, INDEX_NAME FROM performance_schema.table_io_waits_summary_by_index_usage "
                    "WHERE OBJECT_SCHEMA = DATABASE() AND INDEX_NAME IS NOT NULL AND COUNT_STAR > 0"
                )
            }
            source = "performance_schema, since the server started"
        else:
            return [
                "unused indexes: the server does not track index use (userstat and performance_schema are "
                "OFF; set userstat=1 in the server configuration to have it reported)"
            ]
        unused = [f"{t}.{i}" for t in tables for i in self.live_indexes(t) if i != "PRIMARY" and (t, i) not in used]
        return [f"unused indexes ({source}): {', '.join(unused) or 'none'}"]
