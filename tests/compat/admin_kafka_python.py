"""kafka-python's KafkaAdminClient against minikafka: a topic created with configs (an invalid
config refused with INVALID_CONFIG and nothing created), DescribeConfigs with each value's source,
AlterConfigs and IncrementalAlterConfigs, CreatePartitions, DeleteRecords (the earliest offset
moves), ListGroups/DescribeGroups/DeleteGroups with a live member, committed offsets with their
metadata, and alter_group_offsets / reset_group_offsets followed by a consumer that starts where
they were set."""
import time

import kafka.errors as Errors
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, KafkaAdminClient, OffsetSpec
from kafka.structs import OffsetAndMetadata

from common import BOOTSTRAP, check, expect, finish, name, wait_until

TOPIC = name("kpa-cfg")
RECORDS_TOPIC = name("kpa-records")
GROUP_TOPIC = name("kpa-gtopic")
GROUP = name("kpa-live")
RESET_GROUP = name("kpa-reset")
CLIENT_ID = "kpa-member"
META = "kpa-commit-meta"

admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="kpa-admin")


def expect_raises(fn, error_class, what):
    try:
        got = fn()
    except Errors.KafkaError as e:
        expect(isinstance(e, error_class),
               f"{what}: expected {error_class.__name__}, got {type(e).__name__}: {e}")
        return
    raise AssertionError(f"{what}: expected {error_class.__name__}, got success: {got!r}")


def partition_count(topic):
    for t in admin.describe_topics([topic]):
        if t["name"] == topic and t["error_code"] == 0:
            return len(t["partitions"])
    return None


def describe(topic):
    res = admin.describe_configs([ConfigResource("TOPIC", topic)], config_filter="all")
    return res["topic"][topic]


def expect_config(configs, key, value, source, what):
    e = configs.get(key)
    expect(e is not None, f"{what}: {key} missing from DescribeConfigs ({len(configs)} entries: "
                          f"{sorted(configs)[:20]})")
    got = (e["value"], e["config_source"])
    expect(got == (value, source), f"{what}: expected {key}={value} source {source}, got "
                                   f"{key}={got[0]} source {got[1]}")


def produce(topic, n, partition=None):
    p = KafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
    futs = [p.send(topic, key=f"k{i % 7}".encode(), value=f"v-{i}".encode(), partition=partition)
            for i in range(n)]
    for f in futs:
        f.get(timeout=30)
    p.close()


def test_create_with_configs():
    admin.create_topics({TOPIC: {"num_partitions": 3, "replication_factor": 1,
                                 "configs": {"cleanup.policy": "compact",
                                             "retention.ms": "3600000"}}})
    expect(partition_count(TOPIC) == 3, f"expected 3 partitions, got {partition_count(TOPIC)}")


def refused_create(prefix, config):
    bad = name(prefix)
    expect_raises(lambda: admin.create_topics({bad: {"num_partitions": 1, "replication_factor": 1,
                                                     "configs": config}}),
                  Errors.InvalidConfigurationError, f"create with {config}")
    expect(bad not in admin.list_topics(), f"{bad} exists after a refused create")


def test_create_unknown_config_refused():
    refused_create("kpa-bad-name", {"no.such.config": "1"})


def test_create_invalid_value_refused():
    refused_create("kpa-bad-value", {"cleanup.policy": "nonsense"})


def test_describe_configs():
    configs = describe(TOPIC)
    expect_config(configs, "cleanup.policy", "compact", "DYNAMIC_TOPIC_CONFIG", "set at create")
    expect_config(configs, "retention.ms", "3600000", "DYNAMIC_TOPIC_CONFIG", "set at create")
    seg = configs.get("segment.bytes")
    expect(seg is not None and seg["value"] and seg["config_source"] in
           ("DEFAULT_CONFIG", "STATIC_BROKER_CONFIG"),
           f"segment.bytes (not set on the topic): expected a value with source DEFAULT_CONFIG or "
           f"STATIC_BROKER_CONFIG, got {seg}")
    # The default filter ("modified") is what kafka-python users see first: only the two set.
    modified = admin.describe_configs([ConfigResource("TOPIC", TOPIC)])["topic"][TOPIC]
    expect(sorted(modified) == ["cleanup.policy", "retention.ms"],
           f"modified configs: expected cleanup.policy and retention.ms, got {sorted(modified)}")


def test_alter_configs_replaces():
    res = admin.alter_configs([ConfigResource("TOPIC", TOPIC, {"retention.ms": "7200000"})],
                              incremental=False)
    expect(res == {"topic": {TOPIC: "OK"}}, f"AlterConfigs: expected OK, got {res}")
    # kafka-python re-sends the other modified keys itself (AlterConfigs replaces the whole set).
    configs = describe(TOPIC)
    expect_config(configs, "retention.ms", "7200000", "DYNAMIC_TOPIC_CONFIG", "after AlterConfigs")
    expect_config(configs, "cleanup.policy", "compact", "DYNAMIC_TOPIC_CONFIG",
                  "after AlterConfigs (kept by the client)")


def test_incremental_alter():
    res = admin.alter_configs([ConfigResource("TOPIC", TOPIC, {
        "cleanup.policy": ("SET", "compact,delete"), "retention.ms": ("DELETE", None)})],
        incremental=True)
    expect(res == {"topic": {TOPIC: "OK"}}, f"IncrementalAlterConfigs: expected OK, got {res}")
    configs = describe(TOPIC)
    cp = configs.get("cleanup.policy")
    got = cp and (sorted(cp["value"].split(",")), cp["config_source"])
    expect(got == (["compact", "delete"], "DYNAMIC_TOPIC_CONFIG"),
           f"after SET: expected cleanup.policy=compact,delete source DYNAMIC_TOPIC_CONFIG, got {got}")
    rm = configs.get("retention.ms")
    expect(rm is not None and rm["config_source"] != "DYNAMIC_TOPIC_CONFIG",
           f"after DELETE retention.ms: expected its default, got {rm}")


def test_incremental_alter_invalid_refused():
    res = admin.alter_configs([ConfigResource("TOPIC", TOPIC, {"cleanup.policy": ("SET", "nonsense")})],
                              incremental=True)
    got = res.get("topic", {}).get(TOPIC, "")
    expect("InvalidConfigurationError" in got,
           f"IncrementalAlterConfigs cleanup.policy=nonsense: expected InvalidConfigurationError, got {res}")
    cp = describe(TOPIC).get("cleanup.policy")
    expect(cp is not None and cp["value"] != "nonsense", f"changed by a refused alter: {cp}")


def test_add_partitions():
    admin.create_partitions({TOPIC: 5})
    expect(partition_count(TOPIC) == 5, f"expected 5 partitions, got {partition_count(TOPIC)}")
    expect_raises(lambda: admin.create_partitions({TOPIC: 2}), Errors.InvalidPartitionsError,
                  "shrinking 5 -> 2 partitions")


def test_delete_records():
    admin.create_topics({RECORDS_TOPIC: {"num_partitions": 1, "replication_factor": 1}})
    produce(RECORDS_TOPIC, 100, partition=0)
    tp = TopicPartition(RECORDS_TOPIC, 0)
    res = admin.delete_records({tp: 40})
    low = res[tp]["low_watermark"]
    expect(low == 40, f"delete_records before 40: expected low_watermark 40, got {low}")
    earliest = admin.list_partition_offsets({tp: OffsetSpec.EARLIEST})[tp].offset
    expect(earliest == 40, f"ListOffsets earliest after delete_records: expected 40, got {earliest}")
    c = KafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
    c.assign([tp])
    c.seek_to_beginning(tp)
    first = None
    deadline = time.time() + 30
    while first is None and time.time() < deadline:
        for recs in c.poll(timeout_ms=500).values():
            first = recs[0].offset
    c.close()
    expect(first == 40, f"a consumer from the beginning: expected first offset 40, got {first}")


def group_consumer(group):
    c = KafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=group, client_id=CLIENT_ID,
                      enable_auto_commit=False, auto_offset_reset="earliest",
                      session_timeout_ms=10000, heartbeat_interval_ms=1000)
    # The topic's partitions known before joining: the first assignment is then complete, with no
    # rejoin on the next metadata update (in 1 run of 4 such a rejoin left kafka-python's leader
    # waiting after "performing partition assignments" until the timeout).
    wait_until(lambda: c.partitions_for_topic(GROUP_TOPIC) == {0, 1}, 20,
               f"{GROUP_TOPIC}'s 2 partitions in the consumer's metadata")
    c.subscribe([GROUP_TOPIC])
    return c


def join(c, partitions):
    wait_until(lambda: (c.poll(timeout_ms=200), len(c.assignment()) == partitions)[1], 60,
               f"the consumer to be assigned {partitions} partitions")


def assigned(member):
    """The member's assignment as sorted (topic, partition) pairs, whatever shape it decoded to."""
    a = member.get("member_assignment")
    if hasattr(a, "partitions"):
        return sorted((tp.topic, tp.partition) for tp in a.partitions())
    if isinstance(a, dict):  # describe_groups decodes it, then to_dict()s it: a list of dicts
        return sorted((t["topic"], p) for t in a.get("assigned_partitions", [])
                      for p in t["partitions"])
    return a


LIVE = {}


def test_live_group_commit_metadata():
    admin.create_topics({GROUP_TOPIC: {"num_partitions": 2, "replication_factor": 1}})
    produce(GROUP_TOPIC, 30, partition=0)
    produce(GROUP_TOPIC, 30, partition=1)
    c = group_consumer(GROUP)
    LIVE["c"] = c
    join(c, 2)
    c.commit({TopicPartition(GROUP_TOPIC, p): OffsetAndMetadata(5 + p, META, -1) for p in (0, 1)})
    res = admin.list_group_offsets({GROUP: None})[GROUP]
    got = sorted((tp.partition, om.offset, om.metadata) for tp, om in res.items())
    want = [(0, 5, META), (1, 6, META)]
    expect(got == want, f"list_group_offsets: expected (partition, offset, metadata) {want}, got {got}")


def test_list_groups_live():
    groups = admin.list_groups()
    found = [g for g in groups if g["group_id"] == GROUP]
    expect(found, f"list_groups with a live member: expected {GROUP}, got {groups}")
    expect(found[0].get("protocol_type") == "consumer",
           f"list_groups: expected protocol type consumer, got {found[0]}")
    state = found[0].get("group_state")
    expect(state in (None, "Stable"), f"list_groups: expected state Stable, got {found[0]}")


def test_describe_group_live():
    d = admin.describe_groups([GROUP])[GROUP]
    expect(d["error"] is None, f"describe_groups: error {d['error']}")
    expect(d["group_state"] == "Stable", f"expected state Stable, got {d['group_state']!r}")
    expect(d["protocol_type"] == "consumer" and d["protocol_data"],
           f"expected protocol type consumer and the assignor, got {d['protocol_type']!r} "
           f"{d['protocol_data']!r}")
    expect(len(d["members"]) == 1, f"expected 1 member, got {d['members']}")
    m = d["members"][0]
    expect(m["client_id"] == CLIENT_ID, f"member client id: expected {CLIENT_ID}, got {m['client_id']!r}")
    expect("127.0.0.1" in (m["client_host"] or ""),
           f"member host: expected 127.0.0.1, got {m['client_host']!r}")
    want = [(GROUP_TOPIC, 0), (GROUP_TOPIC, 1)]
    expect(assigned(m) == want, f"member assignment: expected {want}, got {assigned(m)!r}")


def test_delete_group_refused_while_active():
    res = admin.delete_groups([GROUP])
    expect(res == {GROUP: "NonEmptyGroupError"},
           f"delete_groups with a live member: expected NonEmptyGroupError (GROUP_NOT_EMPTY), got {res}")
    d = admin.describe_groups([GROUP])[GROUP]
    expect(d["group_state"] == "Stable" and len(d["members"]) == 1,
           f"after the refused delete: expected Stable with 1 member, got {d['group_state']} "
           f"{len(d['members'])}")


def test_delete_group_after_leave():
    LIVE.pop("c").close()  # LeaveGroup: the group becomes Empty at once
    d = admin.describe_groups([GROUP])[GROUP]
    expect(d["group_state"] == "Empty" and not d["members"],
           f"after the member left: expected Empty with no members, got {d['group_state']} {d['members']}")
    res = admin.delete_groups([GROUP])
    expect(res == {GROUP: "OK"}, f"delete_groups after the member left: expected OK, got {res}")
    left = [g for g in admin.list_groups() if g["group_id"] == GROUP]
    expect(not left, f"list_groups after delete: expected no {GROUP}, got {left}")
    offs = admin.list_group_offsets({GROUP: [TopicPartition(GROUP_TOPIC, 0)]})[GROUP]
    got = {tp.partition: om.offset for tp, om in offs.items()}
    expect(got in ({}, {0: -1}), f"committed offsets after delete: expected none, got {got}")


def test_reset_offsets_then_consume():
    # A consumer reads everything and commits; with the group empty, alter_group_offsets sets
    # partition 0 to 10 and partition 1 to 20, then reset_group_offsets moves partition 1 to the
    # earliest offset (0); the group's next consumer starts exactly there.
    tps = [TopicPartition(GROUP_TOPIC, p) for p in (0, 1)]
    ends = {tp.partition: o.offset
            for tp, o in admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in tps}).items()}
    expect(min(ends.values()) > 20, f"need more than 20 records a partition, ends {ends}")
    c = group_consumer(RESET_GROUP)
    join(c, 2)
    c.commit({tp: OffsetAndMetadata(ends[tp.partition], "", -1) for tp in tps})
    c.close()
    res = admin.alter_group_offsets(RESET_GROUP, {tps[0]: OffsetAndMetadata(10, "", -1),
                                                  tps[1]: OffsetAndMetadata(20, "", -1)})
    errs = {tp.partition: e.__name__ for tp, e in res.items() if e is not Errors.NoError}
    expect(len(res) == 2 and not errs, f"alter_group_offsets: expected NoError for 2 partitions, got {res}")
    res = admin.reset_group_offsets(RESET_GROUP, {tps[1]: OffsetSpec.EARLIEST})
    got = {tp.partition: (r["error"].__name__, r["offset"]) for tp, r in res.items()}
    expect(got == {1: ("NoError", 0)}, f"reset_group_offsets to earliest: expected {{1: (NoError, 0)}}, got {got}")
    want = {0: 10, 1: 0}
    offs = admin.list_group_offsets({RESET_GROUP: tps})[RESET_GROUP]
    got = {tp.partition: om.offset for tp, om in offs.items()}
    expect(got == want, f"committed after the resets: expected {want}, got {got}")
    c = group_consumer(RESET_GROUP)
    first = {}
    deadline = time.time() + 60
    while len(first) < 2 and time.time() < deadline:
        for tp, recs in c.poll(timeout_ms=500).items():
            first.setdefault(tp.partition, recs[0].offset)
    c.close()
    expect(first == want, f"the group's next consumer: expected first offsets {want}, got {first}")


check("kafka-python admin: create topic with configs (cleanup.policy=compact, retention.ms)",
      test_create_with_configs)
check("kafka-python admin: create with no.such.config=1 refused INVALID_CONFIG, nothing created",
      test_create_unknown_config_refused)
check("kafka-python admin: create with cleanup.policy=nonsense refused INVALID_CONFIG, nothing created",
      test_create_invalid_value_refused)
check("kafka-python admin: describe_configs shows set values with source DYNAMIC_TOPIC_CONFIG, "
      "others as defaults", test_describe_configs)
check("kafka-python admin: alter_configs (AlterConfigs) sets retention.ms", test_alter_configs_replaces)
check("kafka-python admin: alter_configs (IncrementalAlterConfigs) SET and DELETE", test_incremental_alter)
check("kafka-python admin: IncrementalAlterConfigs cleanup.policy=nonsense refused INVALID_CONFIG",
      test_incremental_alter_invalid_refused)
check("kafka-python admin: create_partitions 3 -> 5 (and 5 -> 2 refused)", test_add_partitions)
check("kafka-python admin: delete_records before 40 moves the earliest offset to 40",
      test_delete_records)
check("kafka-python admin: list_group_offsets shows the commit metadata",
      test_live_group_commit_metadata)
check("kafka-python admin: list_groups shows the live group", test_list_groups_live)
check("kafka-python admin: describe_groups: Stable, member client id, host, assignment",
      test_describe_group_live)
check("kafka-python admin: delete_groups refused GROUP_NOT_EMPTY while a member is live",
      test_delete_group_refused_while_active)
check("kafka-python admin: delete_groups accepted after the member leaves",
      test_delete_group_after_leave)
check("kafka-python admin: alter_group_offsets + reset_group_offsets, then the group's consumer "
      "starts there", test_reset_offsets_then_consume)
if "c" in LIVE:
    LIVE.pop("c").close()
admin.close()
finish()
