"""`kill -9` during a burst of inspections loses no acknowledged record, and the chain still verifies."""

import os
import signal
import threading

import httpx

from evidence_store import open_store

from server_process import ServerProcess

BURST = 1000  # inspections the clients try to send
KILL_AFTER = 150  # acknowledged answers before the server is killed


def test_kill_9_loses_no_acknowledged_record(classifier_model, synth_data, database_url, tmp_path):
    """On the classifier: the store is under test, not the recipe, and it scores the burst fastest."""
    data_dir = tmp_path / "evidence"
    env = {"COUNTERFEIT_QUALITY_MIN_SIDE": "96"}
    if database_url:
        env["COUNTERFEIT_DATABASE_URL"] = database_url
    server = ServerProcess(["--model", str(classifier_model)], data_dir, env).wait_ready()
    process, url = server.process, server.url
    photo = sorted((synth_data / "test" / "genuine").rglob("*.jpg"))[0].read_bytes()
    acknowledged, lock, sent = [], threading.Lock(), iter(range(BURST))

    def client() -> None:
        with httpx.Client(timeout=30) as session:
            for _ in sent:  # shared iterator: BURST requests in all, bounded
                try:
                    answer = session.post(f"{url}/v1/inspections", files={"image": ("p.jpg", photo, "image/jpeg")})
                except httpx.TransportError:
                    return  # the server is gone
                if answer.status_code == 200:
                    with lock:
                        acknowledged.append(answer.json()["id"])
                        if len(acknowledged) == KILL_AFTER:
                            os.kill(process.pid, signal.SIGKILL)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL and len(acknowledged) >= KILL_AFTER
    store = open_store(database_url, data_dir)
    try:
        missing = [record_id for record_id in acknowledged if store.get(record_id) is None]
        assert missing == [], f"{len(missing)} acknowledged records lost"
        report = store.verify()
        assert report.ok, report.first_bad
    finally:
        store.close()
