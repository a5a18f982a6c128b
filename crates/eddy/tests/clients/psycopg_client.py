"""Drives Eddy with psycopg 3 the way an application would: parameters
(server-side binding), executemany, binary results, a non-autocommit
connection, errors with SQLSTATEs. Exits non-zero on any mismatch."""

import datetime
import decimal
import sys

import psycopg

port = int(sys.argv[1])
dsn = f"host=127.0.0.1 port={port} user=eddy dbname=eddy"

with psycopg.connect(dsn, autocommit=True) as conn:
    cur = conn.cursor()
    cur.execute(
        "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer TEXT, amount NUMERIC(10,2),"
        " placed TIMESTAMP, paid BOOLEAN)"
    )
    cur.execute(
        "INSERT INTO orders VALUES (%s, %s, %s, %s, %s)",
        (1, "ann", 1.5, datetime.datetime(2024, 1, 1, 10, 0), True),
    )
    cur.executemany(
        "INSERT INTO orders VALUES (%s, %s, %s, %s, %s)",
        [
            (2, "bob", decimal.Decimal("2.25"), datetime.datetime(2024, 1, 2, 10, 0), False),
            (3, "ann", None, None, None),
        ],
    )
    cur.execute(
        "CREATE MATERIALIZED VIEW per_customer AS"
        " SELECT customer, count(*) AS n, sum(amount) AS total FROM orders GROUP BY customer"
    )
    cur.execute("SELECT * FROM per_customer ORDER BY customer")
    assert cur.fetchall() == [("ann", 2, decimal.Decimal("1.50")), ("bob", 1, decimal.Decimal("2.25"))]

    cur.execute("UPDATE orders SET amount = %s WHERE id = %s", (decimal.Decimal("4.00"), 3))
    assert cur.rowcount == 1, cur.rowcount
    cur.execute("SELECT total FROM per_customer WHERE customer = %s", ("ann",), binary=True)
    assert cur.fetchall() == [(decimal.Decimal("5.50"),)]

    cur.execute("SELECT id, placed, paid FROM orders WHERE id = %s", (2,), binary=True)
    assert cur.fetchall() == [(2, datetime.datetime(2024, 1, 2, 10, 0), False)]

    # EXPLAIN over the extended protocol describes DataFusion's two columns.
    cur.execute("EXPLAIN SELECT id FROM orders WHERE id > %s", (1,))
    assert [row[0] for row in cur.fetchall()][0] == "logical_plan"
    cur.execute("EXPLAIN CREATE MATERIALIZED VIEW x AS SELECT id FROM orders WHERE id > 1")
    assert cur.fetchall() == [("Filter: id > 1",), ("  Project: id",), ("    Scan: orders",)]

    try:
        cur.execute("INSERT INTO orders VALUES (%s, %s, %s, %s, %s)", (1, "dup", 1, None, None))
        raise AssertionError("duplicate key accepted")
    except psycopg.errors.UniqueViolation as error:
        assert error.sqlstate == "23505"
    try:
        cur.execute("SELECT * FROM missing")
        raise AssertionError("missing table accepted")
    except psycopg.errors.UndefinedTable as error:
        assert error.sqlstate == "42P01"

# psycopg's default: statements run inside BEGIN ... COMMIT.
with psycopg.connect(dsn) as conn:
    with conn.cursor() as cur:
        cur.execute("SELECT n FROM per_customer WHERE customer = 'ann'")
        assert cur.fetchone() == (2,)
    conn.commit()

print("psycopg client ok")
