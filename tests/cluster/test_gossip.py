"""Gossip packets: the sealing format (pure, table-tested) and the UDP endpoint on loopback."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from rpcnet.cluster.gossip import (
    DATAGRAM_VERSION,
    DEFAULT_MAX_PACKET_SIZE,
    INSECURE_VERSION,
    SEALED_VERSION,
    GossipEndpoint,
    GossipPacketError,
    MalformedPacketError,
    PacketAuthError,
    ReplayedPacketError,
    ReplayGuard,
    SecurityMismatchError,
    StalePacketError,
    VersionMismatchError,
    open_datagram,
    seal,
    seal_datagram,
    seal_insecure,
    sealing_overhead,
    unseal,
)
from rpcnet.cluster.keyring import Keyring
from rpcnet.errors import ConfigError, MessageTooLargeError, TransportError

KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))
NONCE = bytes(range(12))
LABEL = "prod-eu"
DEADLINE = 5.0

# -- the packet format (pure) ---------------------------------------------


def test_sealed_packet_layout_is_version_nonce_then_aes_gcm_with_label_as_associated_data():
    """The request channel's format (1): version, nonce, AES-GCM."""
    packet = seal(b"payload", key=KEY_A, label=LABEL, nonce=NONCE)
    assert packet[0] == SEALED_VERSION == 0x01
    assert packet[1:13] == NONCE
    # Anyone holding the key can open it from the documented layout alone.
    aad = bytes([SEALED_VERSION]) + LABEL.encode()
    assert AESGCM(KEY_A).decrypt(packet[1:13], packet[13:], aad) == b"payload"
    assert len(packet) == len(b"payload") + 29


def test_datagram_layout_puts_epoch_counter_and_clock_inside_the_encryption():
    """Gossip datagrams (format 2): the same, with 20 bytes of header sealed in."""
    packet = seal_datagram(b"payload", key=KEY_A, label=LABEL, nonce=NONCE, epoch=b"EPOCH-01", counter=7, timestamp=1_700_000_000)
    assert packet[0] == DATAGRAM_VERSION == 0x02
    assert packet[1:13] == NONCE
    plain = AESGCM(KEY_A).decrypt(packet[1:13], packet[13:], bytes([DATAGRAM_VERSION]) + LABEL.encode())
    assert plain == b"EPOCH-01" + (7).to_bytes(8, "big") + (1_700_000_000).to_bytes(4, "big") + b"payload"
    assert len(packet) == len(b"payload") + sealing_overhead(LABEL, insecure=False) == 7 + 49
    opened = open_datagram(packet, keys=[KEY_B, KEY_A], label=LABEL)
    assert (opened.epoch, opened.counter, opened.timestamp, opened.payload) == (b"EPOCH-01", 7, 1_700_000_000, b"payload")


def test_a_datagram_of_the_previous_format_is_refused_naming_both_formats():
    with pytest.raises(VersionMismatchError, match=r"format 1 \(rpcnet 0.1\).*format 2 \(rpcnet 0.2"):
        open_datagram(seal(b"payload", key=KEY_A, label=LABEL, nonce=NONCE), keys=[KEY_A], label=LABEL)
    assert VersionMismatchError.counter == "dropped_version"


# -- the replay guard (pure, explicit time) -------------------------------------


def test_replay_guard_accepts_each_counter_once_in_any_order_within_the_window():
    guard = ReplayGuard(max_skew=60, window=64)
    now = 1_000_000.0
    for counter in (5, 3, 4, 9, 1):
        guard.check(b"e1", counter, int(now), now)
    for counter in (5, 3, 9):
        with pytest.raises(ReplayedPacketError, match="seen already"):
            guard.check(b"e1", counter, int(now), now)
    guard.check(b"e1", 200, int(now), now)
    with pytest.raises(ReplayedPacketError, match="behind the newest"):
        guard.check(b"e1", 100, int(now), now)  # unseen, but too old to tell
    guard.check(b"e1", 150, int(now), now)  # within the window of 200


def test_replay_guard_accepts_a_restarted_sender_at_once():
    """A restart draws a new epoch: counter 1 again is a new packet."""
    guard = ReplayGuard(max_skew=60)
    now = 1_000_000.0
    for counter in range(1, 100):
        guard.check(b"boot-1", counter, int(now), now)
    guard.check(b"boot-2", 1, int(now), now + 0.5)
    with pytest.raises(ReplayedPacketError):
        guard.check(b"boot-1", 50, int(now), now + 0.5)


def test_replay_guard_drops_stale_packets_and_forgets_quiet_epochs_safely():
    guard = ReplayGuard(max_skew=30)
    now = 1_000_000.0
    guard.check(b"e", 1, int(now) - 29, now)
    for stamp in (now - 31, now + 31):
        with pytest.raises(StalePacketError, match=r"tolerance 30 s.*gossip_clock_skew"):
            guard.check(b"e", 2, int(stamp), now)
    # Silent for 2 x skew: forgotten. Its old packets are stale by then.
    later = now + 61
    guard.check(b"other", 1, int(later), later)
    assert len(guard) == 1
    with pytest.raises(StalePacketError):
        guard.check(b"e", 1, int(now), later)


def test_replay_guard_bounds_its_memory():
    guard = ReplayGuard(max_skew=60, max_epochs=3)
    for i in range(10):
        guard.check(bytes([i]) * 8, 1, 1000, 1000.0 + i)
    assert len(guard) == 3


def test_insecure_packet_layout_is_version_label_length_label_then_payload():
    packet = seal_insecure(b"payload", label=LABEL)
    assert packet == bytes([INSECURE_VERSION, len(LABEL)]) + LABEL.encode() + b"payload"
    assert INSECURE_VERSION != SEALED_VERSION
    assert sealing_overhead(LABEL, insecure=True) == 2 + len(LABEL)


def _flip(packet: bytes, index: int) -> bytes:
    return packet[:index] + bytes([packet[index] ^ 0x01]) + packet[index + 1 :]


SEALED = seal(b"hello", key=KEY_A, label=LABEL, nonce=NONCE)
PLAIN = seal_insecure(b"hello", label=LABEL)


@pytest.mark.parametrize(
    "packet, keys, label, outcome",
    [
        (SEALED, [KEY_A], LABEL, b"hello"),
        (SEALED, [KEY_B, KEY_A], LABEL, b"hello"),  # any installed key opens, not only the primary
        (seal(b"", key=KEY_A, label=LABEL, nonce=NONCE), [KEY_A], LABEL, b""),
        (seal(b"x", key=KEY_A, label="", nonce=NONCE), [KEY_A], "", b"x"),
        (SEALED, [KEY_B], LABEL, PacketAuthError),  # wrong key
        (SEALED, [KEY_A], "prod-us", PacketAuthError),  # another cluster label
        (SEALED, [KEY_A], "", PacketAuthError),  # a labelled cluster vs an unlabelled one
        (_flip(SEALED, 5), [KEY_A], LABEL, PacketAuthError),  # nonce altered
        (_flip(SEALED, 14), [KEY_A], LABEL, PacketAuthError),  # ciphertext altered
        (_flip(SEALED, len(SEALED) - 1), [KEY_A], LABEL, PacketAuthError),  # tag altered
        (SEALED[:-1], [KEY_A], LABEL, PacketAuthError),  # cut inside the tag
        (SEALED[:28], [KEY_A], LABEL, MalformedPacketError),  # shorter than nonce + tag
        (SEALED[:1], [KEY_A], LABEL, MalformedPacketError),
        (b"", [KEY_A], LABEL, MalformedPacketError),
        (b"\x07" + SEALED[1:], [KEY_A], LABEL, MalformedPacketError),  # unknown version
        (PLAIN, [KEY_A], LABEL, SecurityMismatchError),  # unencrypted at a secure node
        (SEALED, None, LABEL, SecurityMismatchError),  # encrypted at an insecure node
        (PLAIN, None, LABEL, b"hello"),
        (PLAIN, None, "prod-us", PacketAuthError),  # insecure, another cluster label
        (PLAIN[:5], None, LABEL, MalformedPacketError),  # cut inside the label
        (bytes([INSECURE_VERSION]), None, LABEL, MalformedPacketError),
    ],
    ids=[
        "round trip",
        "secondary key opens",
        "empty payload",
        "empty label",
        "wrong key",
        "wrong label",
        "label vs no label",
        "tampered nonce",
        "tampered ciphertext",
        "tampered tag",
        "truncated tag",
        "truncated below minimum",
        "version byte only",
        "empty packet",
        "unknown version",
        "insecure packet at secure node",
        "secure packet at insecure node",
        "insecure round trip",
        "insecure wrong label",
        "insecure truncated label",
        "insecure version only",
    ],
)
def test_unseal(packet, keys, label, outcome):
    if isinstance(outcome, bytes):
        assert unseal(packet, keys=keys, label=label) == outcome
    else:
        with pytest.raises(outcome):
            unseal(packet, keys=keys, label=label)


@pytest.mark.parametrize(
    "error, counter",
    [
        (PacketAuthError, "dropped_auth"),
        (MalformedPacketError, "dropped_malformed"),
        (SecurityMismatchError, "dropped_insecure_mismatch"),
    ],
)
def test_each_refusal_names_its_counter(error, counter):
    assert issubclass(error, GossipPacketError)
    assert error.counter == counter


def test_labels_over_255_bytes_are_refused():
    with pytest.raises(ConfigError, match="at most 255"):
        seal_insecure(b"", label="é" * 128)


# -- the endpoint on loopback ---------------------------------------------


class Inbox:
    """Collects what an endpoint hands out, with deadline-bound waits."""

    def __init__(self) -> None:
        self.items: list[tuple[tuple[str, int], object]] = []
        self._changed = asyncio.Event()

    def __call__(self, addr: tuple[str, int], value: object) -> None:
        self.items.append((addr, value))
        self._changed.set()

    async def wait_for(self, count: int) -> None:
        async def _wait() -> None:
            while len(self.items) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(_wait(), DEADLINE)

    @property
    def values(self) -> list[object]:
        return [value for _, value in self.items]


class Node:
    def __init__(self, endpoint: GossipEndpoint, inbox: Inbox, drops: Inbox) -> None:
        self.endpoint, self.inbox, self.drops = endpoint, inbox, drops

    @property
    def address(self) -> tuple[str, int]:
        return self.endpoint.local_address


OpenNode = Callable[..., Awaitable[Node]]


@pytest.fixture
async def open_node() -> AsyncIterator[OpenNode]:
    opened: list[GossipEndpoint] = []

    async def _open(**options: object) -> Node:
        inbox, drops = Inbox(), Inbox()
        options.setdefault("bind", ("127.0.0.1", 0))
        options.setdefault("label", LABEL)
        options.setdefault("on_datagram", inbox)
        endpoint = await GossipEndpoint.open(on_drop=drops, **options)
        opened.append(endpoint)
        return Node(endpoint, inbox, drops)

    yield _open
    for endpoint in opened:
        endpoint.close()


@pytest.fixture
def raw_socket() -> Iterator[socket.socket]:
    """A plain UDP socket on loopback, to put exact bytes on the wire and read them back."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


async def recv_raw(sock: socket.socket) -> bytes:
    data, _ = await asyncio.wait_for(asyncio.get_running_loop().sock_recvfrom(sock, 65535), DEADLINE)
    return data


async def test_round_trip_both_ways(open_node):
    a = await open_node(keyring=Keyring([KEY_A]))
    b = await open_node(keyring=Keyring([KEY_A]))
    a.endpoint.send(b.address, b"ping")
    await b.inbox.wait_for(1)
    b.endpoint.send(a.address, b"ack")
    await a.inbox.wait_for(1)
    assert b.inbox.items == [(a.address, b"ping")]
    assert a.inbox.items == [(b.address, b"ack")]
    assert a.endpoint.stats.sent == 1 and a.endpoint.stats.received == 1
    assert b.endpoint.stats.sent == 1 and b.endpoint.stats.received == 1


async def test_on_the_wire_the_payload_is_encrypted_with_a_fresh_nonce_per_packet(open_node, raw_socket):
    a = await open_node(keyring=Keyring([KEY_A]))
    payload = b"member node-7 is suspect"
    a.endpoint.send(raw_socket.getsockname(), payload)
    a.endpoint.send(raw_socket.getsockname(), payload)
    first, second = await recv_raw(raw_socket), await recv_raw(raw_socket)
    assert first[0] == DATAGRAM_VERSION
    assert payload not in first
    assert first[1:13] != second[1:13]
    one, two = open_datagram(first, keys=[KEY_A], label=LABEL), open_datagram(second, keys=[KEY_A], label=LABEL)
    assert one.payload == two.payload == payload
    assert one.epoch == two.epoch and (one.counter, two.counter) == (1, 2)


async def test_a_replayed_packet_is_dropped_and_counted(open_node, raw_socket):
    a = await open_node(keyring=Keyring([KEY_A]))
    b = await open_node(keyring=Keyring([KEY_A]))
    a.endpoint.send(raw_socket.getsockname(), b"ping node-b seq 7")
    captured = await recv_raw(raw_socket)
    for _ in range(3):
        raw_socket.sendto(captured, b.address)
    await b.drops.wait_for(2)
    assert b.inbox.values == [b"ping node-b seq 7"]
    assert b.endpoint.stats.dropped_replay == 2
    # The sender itself goes on being heard: its next packets are new.
    a.endpoint.send(b.address, b"next")
    await b.inbox.wait_for(2)


async def test_a_restarted_sender_is_heard_at_once(open_node):
    b = await open_node(keyring=Keyring([KEY_A]))
    first = await open_node(keyring=Keyring([KEY_A]))
    first.endpoint.send(b.address, b"life 1")
    await b.inbox.wait_for(1)
    first.endpoint.close()
    again = await open_node(keyring=Keyring([KEY_A]))  # counter starts at 1 again, with a new epoch
    again.endpoint.send(b.address, b"life 2")
    await b.inbox.wait_for(2)
    assert b.endpoint.stats.dropped_replay == 0


async def test_a_sender_with_a_skewed_clock_is_dropped_and_logged(open_node, caplog):
    b = await open_node(keyring=Keyring([KEY_A]), max_clock_skew=30)
    late = await open_node(keyring=Keyring([KEY_A]), clock=lambda: time.time() - 120)
    with caplog.at_level("WARNING", logger="rpcnet.cluster.gossip"):
        late.endpoint.send(b.address, b"from the past")
        late.endpoint.send(b.address, b"again")
        await b.drops.wait_for(2)
    assert b.inbox.items == [] and b.endpoint.stats.dropped_stale == 2
    warnings = [r.getMessage() for r in caplog.records if "dropped gossip" in r.getMessage()]
    assert len(warnings) == 1 and "tolerance 30 s" in warnings[0], "logged once a minute per sender"


async def test_a_packet_of_the_previous_release_is_dropped_and_logged(open_node, raw_socket, caplog):
    b = await open_node(keyring=Keyring([KEY_A]))
    with caplog.at_level("WARNING", logger="rpcnet.cluster.gossip"):
        raw_socket.sendto(seal(b"alive node-a", key=KEY_A, label=LABEL, nonce=NONCE), b.address)
        await b.drops.wait_for(1)
    assert b.endpoint.stats.dropped_version == 1
    assert any("format 1 (rpcnet 0.1)" in r.getMessage() for r in caplog.records)


async def test_wrong_key_is_dropped_counted_and_never_delivered(open_node):
    a = await open_node(keyring=Keyring([KEY_A]))
    b = await open_node(keyring=Keyring([KEY_B]))
    a.endpoint.send(b.address, b"alive node-a incarnation 9")
    await b.drops.wait_for(1)
    assert b.inbox.items == []
    assert isinstance(b.drops.values[0], PacketAuthError)
    stats = b.endpoint.stats
    assert (stats.dropped_auth, stats.received) == (1, 0)


async def test_wrong_cluster_label_is_dropped(open_node):
    a = await open_node(keyring=Keyring([KEY_A]), label="staging")
    b = await open_node(keyring=Keyring([KEY_A]), label="production")
    a.endpoint.send(b.address, b"ping")
    await b.drops.wait_for(1)
    assert b.inbox.items == []
    assert b.endpoint.stats.dropped_auth == 1


async def test_key_rotation_never_interrupts_gossip(open_node):
    ring_a, ring_b = Keyring([KEY_A]), Keyring([KEY_A])
    a = await open_node(keyring=ring_a)
    b = await open_node(keyring=ring_b)
    steps = [
        ("A installs new", lambda: ring_a.install(KEY_B)),
        ("B installs new", lambda: ring_b.install(KEY_B)),
        ("A uses new", lambda: ring_a.use(KEY_B)),
        ("B uses new", lambda: ring_b.use(KEY_B)),
        ("A removes old", lambda: ring_a.remove(KEY_A)),
        ("B removes old", lambda: ring_b.remove(KEY_A)),
    ]
    for number, (step, change) in enumerate(steps, start=1):
        change()
        a.endpoint.send(b.address, step.encode())
        b.endpoint.send(a.address, step.encode())
        await a.inbox.wait_for(number)
        await b.inbox.wait_for(number)
        assert a.inbox.values[-1] == b.inbox.values[-1] == step.encode(), step
    assert a.endpoint.stats.dropped_auth == b.endpoint.stats.dropped_auth == 0
    assert ring_a.keys == ring_b.keys == (KEY_B,)

    # Once the old key is gone, a node still sealing with it is shut out.
    stale = await open_node(keyring=Keyring([KEY_A]))
    stale.endpoint.send(a.address, b"old key")
    await a.drops.wait_for(1)
    assert a.inbox.values[-1] == b"B removes old"


async def test_removing_a_key_the_peer_still_seals_with_breaks_gossip(open_node):
    # The order of the rotation steps matters; this is what going too fast looks like.
    ring_a = Keyring([KEY_A])
    a = await open_node(keyring=ring_a)
    b = await open_node(keyring=Keyring([KEY_B, KEY_A]))
    b.endpoint.send(a.address, b"sealed with the new key")
    await a.drops.wait_for(1)
    assert a.inbox.items == []


@pytest.mark.parametrize("secure_sends", [True, False], ids=["secure to insecure", "insecure to secure"])
async def test_secure_and_insecure_nodes_drop_each_others_packets(open_node, secure_sends):
    secure = await open_node(keyring=Keyring([KEY_A]))
    insecure = await open_node(insecure=True)
    sender, receiver = (secure, insecure) if secure_sends else (insecure, secure)
    sender.endpoint.send(receiver.address, b"ping")
    await receiver.drops.wait_for(1)
    assert receiver.inbox.items == []
    assert receiver.endpoint.stats.dropped_insecure_mismatch == 1


async def test_insecure_nodes_talk_to_each_other_within_a_label(open_node, raw_socket):
    a = await open_node(insecure=True)
    b = await open_node(insecure=True)
    other = await open_node(insecure=True, label="other")
    a.endpoint.send(b.address, b"ping")
    await b.inbox.wait_for(1)
    assert b.inbox.values == [b"ping"]
    other.endpoint.send(b.address, b"wrong cluster")
    await b.drops.wait_for(1)
    assert b.inbox.values == [b"ping"]
    assert b.endpoint.stats.dropped_auth == 1


def datagram(payload: bytes, counter: int = 1) -> bytes:
    return seal_datagram(payload, key=KEY_A, label=LABEL, nonce=NONCE, epoch=b"test-ep0", counter=counter, timestamp=int(time.time()))


async def test_tampered_packet_is_dropped(open_node, raw_socket):
    b = await open_node(keyring=Keyring([KEY_A]))
    packet = datagram(b"alive node-a")
    raw_socket.sendto(_flip(packet, 20), b.address)
    await b.drops.wait_for(1)
    raw_socket.sendto(packet, b.address)  # the untouched packet still opens
    await b.inbox.wait_for(1)
    assert b.inbox.values == [b"alive node-a"]
    assert b.endpoint.stats.dropped_auth == 1


@pytest.mark.parametrize(
    "cut, counter",
    [(10, "dropped_malformed"), (-1, "dropped_auth"), (0, "dropped_malformed")],
    ids=["shorter than nonce and tag", "one byte short", "empty"],
)
async def test_truncated_packet_is_dropped(open_node, raw_socket, cut, counter):
    b = await open_node(keyring=Keyring([KEY_A]))
    packet = datagram(b"alive node-a")
    raw_socket.sendto(packet[:cut], b.address)
    await b.drops.wait_for(1)
    assert b.inbox.items == []
    assert getattr(b.endpoint.stats, counter) == 1


async def test_garbage_is_counted_as_malformed(open_node, raw_socket):
    b = await open_node(keyring=Keyring([KEY_A]))
    raw_socket.sendto(b"GET / HTTP/1.1\r\n\r\n", b.address)
    await b.drops.wait_for(1)
    assert b.inbox.items == []
    assert b.endpoint.stats.dropped_malformed == 1


async def test_max_payload_fills_a_1400_byte_packet_and_one_more_byte_is_refused(open_node, raw_socket):
    a = await open_node(keyring=Keyring([KEY_A]))
    assert a.endpoint.max_packet_size == DEFAULT_MAX_PACKET_SIZE == 1400
    assert a.endpoint.max_payload == 1400 - 49
    a.endpoint.send(raw_socket.getsockname(), bytes(a.endpoint.max_payload))
    assert len(await recv_raw(raw_socket)) == 1400

    with pytest.raises(MessageTooLargeError, match=r"1352 bytes is over max_payload 1351.*packet budget"):
        a.endpoint.send(raw_socket.getsockname(), bytes(a.endpoint.max_payload + 1))
    assert a.endpoint.stats.oversize_refused == 1
    assert a.endpoint.stats.sent == 1


async def test_max_payload_follows_the_configured_packet_size_and_mode(open_node):
    a = await open_node(keyring=Keyring([KEY_A]), max_packet_size=512)
    b = await open_node(insecure=True, label="abc", max_packet_size=512)
    assert a.endpoint.max_payload == 512 - 49
    assert b.endpoint.max_payload == 512 - 5


async def test_no_keyring_without_insecure_is_refused():
    with pytest.raises(ConfigError, match=r"needs a keyring.*keyring=.*insecure=True"):
        await GossipEndpoint.open(bind=("127.0.0.1", 0), label=LABEL, on_datagram=Inbox())


async def test_keyring_and_insecure_together_are_refused():
    with pytest.raises(ConfigError, match="choose one"):
        await GossipEndpoint.open(bind=("127.0.0.1", 0), keyring=Keyring([KEY_A]), insecure=True, on_datagram=Inbox())


async def test_a_list_of_keys_instead_of_a_keyring_is_refused():
    with pytest.raises(ConfigError, match=r"Keyring.from_config"):
        await GossipEndpoint.open(bind=("127.0.0.1", 0), keyring=[Keyring.generate()], on_datagram=Inbox())


async def test_advertise_address_defaults_to_the_bound_address(open_node):
    a = await open_node(keyring=Keyring([KEY_A]))
    host, port = a.endpoint.local_address
    assert host == "127.0.0.1" and port != 0
    assert a.endpoint.advertise_address == a.endpoint.local_address


async def test_advertise_address_is_separate_from_the_bind_address(open_node):
    a = await open_node(keyring=Keyring([KEY_A]), bind=("0.0.0.0", 0), advertise=("10.1.2.3", 7946))
    assert a.endpoint.advertise_address == ("10.1.2.3", 7946)
    assert a.endpoint.local_address[0] == "0.0.0.0"
    b = await open_node(keyring=Keyring([KEY_A]))
    b.endpoint.send(("127.0.0.1", a.endpoint.local_address[1]), b"reaches the wildcard bind")
    await a.inbox.wait_for(1)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", ""])
async def test_unspecified_advertise_address_is_refused(host):
    with pytest.raises(ConfigError, match=r"unspecified address.*set advertise="):
        await GossipEndpoint.open(
            bind=("127.0.0.1", 0), keyring=Keyring([KEY_A]), advertise=(host, 7946), on_datagram=Inbox()
        )


async def test_wildcard_bind_without_advertise_is_refused():
    with pytest.raises(ConfigError, match=r"peers cannot send to.*set advertise="):
        await GossipEndpoint.open(bind=("0.0.0.0", 0), keyring=Keyring([KEY_A]), on_datagram=Inbox())


async def test_send_after_close_is_refused(open_node):
    a = await open_node(keyring=Keyring([KEY_A]))
    a.endpoint.close()
    a.endpoint.close()
    assert a.endpoint.closed
    with pytest.raises(TransportError, match="closed"):
        a.endpoint.send(("127.0.0.1", 9), b"late")


async def test_a_failing_callback_is_logged_by_rpcnet_and_the_endpoint_keeps_reading(open_node, caplog):
    delivered = Inbox()
    calls = 0

    def flaky(addr, payload):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("handler bug")
        delivered(addr, payload)

    a = await open_node(keyring=Keyring([KEY_A]))
    b = await open_node(keyring=Keyring([KEY_A]), on_datagram=flaky)
    with caplog.at_level("ERROR", logger="rpcnet.cluster.gossip"):
        a.endpoint.send(b.address, b"first")
        a.endpoint.send(b.address, b"second")
        await delivered.wait_for(1)
    assert delivered.values == [b"second"]
    assert b.endpoint.stats.received == 2
    [record] = [r for r in caplog.records if r.name == "rpcnet.cluster.gossip"]
    assert "callback" in record.getMessage() and record.exc_info[0] is RuntimeError
