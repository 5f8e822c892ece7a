"""After each mqttd run: is every acknowledged message in mqttd.db?"""
import sqlite3
import time

def count_rows(db_path, prefix, timeout=10.0):
    """Rows of clients '<prefix>-*' in mqttd.db, read-only (WAL readers never block the writer)."""
    conn = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True, timeout=timeout)
    try:
        # GLOB is case-sensitive, so it can use the (client_id, received_at) index
        return conn.execute("SELECT count(*) FROM messages WHERE client_id GLOB ?",
                            (prefix + "-*",)).fetchone()[0]
    finally:
        conn.close()


def durability(broker, prefix, res, sc, settle):
    """rows vs acknowledged for one mqttd run; for QoS 0 (nothing acked) rows vs written,
    after waiting up to ``settle`` s for the backlog to commit (so the next run starts clean)."""
    out = {}
    try:
        rows = count_rows(broker.db, prefix)
        if sc["qos"] == 0:
            deadline = time.monotonic() + settle
            while rows < res.get("sent", 0) and time.monotonic() < deadline:
                time.sleep(0.25)
                rows = count_rows(broker.db, prefix)
    except sqlite3.Error as e:
        return {"error": "sqlite: %s" % e}
    out["rows"] = rows
    if sc["qos"]:
        out["acked"] = res.get("acked")
        out["ok"] = res.get("acked") is not None and rows >= res["acked"]
    else:
        out["written"] = res.get("sent")
        out["ok"] = None  # QoS 0 promises nothing; shown for information
    return out

