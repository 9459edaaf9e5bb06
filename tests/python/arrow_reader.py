"""Reads and writes the payloads Spoke's encodings test sends through the
hub, with readers no one at Spoke wrote: pyarrow (Arrow IPC stream,
Parquet) and msgpack, from PyPI.

    arrow_reader.py read-ipc FILE       -> JSON: rows, names, types, the rows
    arrow_reader.py read-parquet FILE   -> the same
    arrow_reader.py write-parquet FILE  (JSON rows on stdin; Snappy, pyarrow's default)
    arrow_reader.py write-ipc FILE      (JSON rows on stdin; an Arrow IPC stream)
    arrow_reader.py read-msgpack FILE   -> the value as JSON
    arrow_reader.py write-msgpack FILE  (a JSON value on stdin)
"""

import json
import sys

import msgpack
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq


def describe(table):
    return {
        "rows": table.num_rows,
        "names": table.column_names,
        "types": [str(field.type) for field in table.schema],
        "data": table.to_pylist(),
    }


def people(rows):
    return pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [("id", pa.int64()), ("name", pa.string()), ("score", pa.float64())]
        ),
    )


def main():
    command, path = sys.argv[1], sys.argv[2]
    if command == "read-ipc":
        with open(path, "rb") as f:
            print(json.dumps(describe(ipc.open_stream(f).read_all())))
    elif command == "read-parquet":
        print(json.dumps(describe(pq.read_table(path))))
    elif command == "write-parquet":
        pq.write_table(people(json.load(sys.stdin)), path, compression="snappy")
    elif command == "write-ipc":
        table = people(json.load(sys.stdin))
        with open(path, "wb") as f, ipc.new_stream(f, table.schema) as writer:
            writer.write_table(table)
    elif command == "read-msgpack":
        with open(path, "rb") as f:
            print(json.dumps(msgpack.unpackb(f.read())))
    elif command == "write-msgpack":
        with open(path, "wb") as f:
            f.write(msgpack.packb(json.load(sys.stdin)))
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
