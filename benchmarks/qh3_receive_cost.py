"""What one received datagram costs in qh3's two entry points, on an established connection.

qh3's ``receive_datagram`` runs Python checks that matter only before the
handshake completes (address normalising, version negotiation and Retry, a
header parse and a copy per packet); ``receive_many_datagrams`` goes to the
native core directly after the handshake (and falls back to
``receive_datagram`` before it). The qh3 backend hands single datagrams to
the latter (``Qh3Backend.receive_datagram``). This measures the difference
on one client/server pair of qh3 connections in one process, no sockets:
the client sends 64-byte writes on one stream, one datagram each, and the
server takes them through either entry point, alternating in rounds of 20
(then acknowledges, so the client's window keeps open).

    .venv/bin/python benchmarks/qh3_receive_cost.py
    .venv/bin/python benchmarks/qh3_receive_cost.py --rounds 2000

Prints microseconds per datagram for each entry point (medians over rounds
would hide nothing here: both see the same packets, interleaved).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from devcerts import write_dev_certs  # noqa: E402

CLIENT_ADDR = ("127.0.0.1", 1000)
SERVER_ADDR = ("127.0.0.1", 2000)


def _pair(directory: Path):  # type: ignore[no-untyped-def]
    from qh3.quic.configuration import QuicConfiguration
    from qh3.quic.connection import QuicConnection

    files = write_dev_certs(directory)
    server_config = QuicConfiguration(is_client=False, alpn_protocols=["bench"])
    server_config.load_cert_chain(files.cert_file, files.key_file)
    client_config = QuicConfiguration(is_client=True, alpn_protocols=["bench"], server_name=files.server_name)
    client_config.load_verify_locations(files.ca_file)
    client = QuicConnection(configuration=client_config)
    client.connect(SERVER_ADDR, now=1.0)
    server = QuicConnection(
        configuration=server_config, original_destination_connection_id=client.original_destination_connection_id
    )
    for _ in range(20):  # the handshake, datagram by datagram
        moved = False
        for sender, receiver, source in ((client, server, CLIENT_ADDR), (server, client, SERVER_ADDR)):
            for data, _ in sender.datagrams_to_send(now=1.0):
                receiver.receive_datagram(data, source, 1.0)
                moved = True
        while client.next_event() is not None or server.next_event() is not None:
            pass
        if not moved:
            break
    if not (client._handshake_complete and server._handshake_complete):
        raise SystemExit("the in-process qh3 handshake did not complete")
    return client, server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1000, help="rounds of 20 datagrams (alternating entry points)")
    options = parser.parse_args(argv)
    try:
        import qh3  # noqa: F401
    except ImportError:
        print("qh3 is not installed: pip install 'rpcnet[qh3]'")
        return 1
    with tempfile.TemporaryDirectory() as directory:
        client, server = _pair(Path(directory))
    now = 1.0
    totals = {"receive_datagram": [0.0, 0], "receive_many_datagrams([one])": [0.0, 0]}
    for round_ in range(options.rounds):
        datagrams = []
        for _ in range(20):
            now += 0.00001
            client.send_stream_data(0, b"x" * 64)
            datagrams += [data for data, _ in client.datagrams_to_send(now=now)]
        started = time.perf_counter()
        if round_ % 2:
            name = "receive_datagram"
            for data in datagrams:
                server.receive_datagram(data, CLIENT_ADDR, now)
        else:
            name = "receive_many_datagrams([one])"
            for data in datagrams:
                server.receive_many_datagrams([data], CLIENT_ADDR, now)
        totals[name][0] += time.perf_counter() - started
        totals[name][1] += len(datagrams)
        while server.next_event() is not None:
            pass
        for data, _ in server.datagrams_to_send(now=now):  # ACKs, so the client keeps sending
            client.receive_datagram(data, SERVER_ADDR, now)
        while client.next_event() is not None:
            pass
    for name, (seconds, count) in totals.items():
        print(f"{name:32} {count:7} datagrams  {seconds / count * 1e6:6.2f} us per datagram")
    return 0


if __name__ == "__main__":
    sys.exit(main())
