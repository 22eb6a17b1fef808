"""confluent-kafka's AdminClient against minikafka: a topic created with configs (an invalid config
refused with INVALID_CONFIG and nothing created), DescribeConfigs with each value's source,
AlterConfigs and IncrementalAlterConfigs, CreatePartitions, DeleteRecords (the earliest offset
moves), ListGroups/DescribeGroups/DeleteGroups with a live member, committed offsets with their
metadata, and alter_consumer_group_offsets followed by a consumer that starts where it was set."""
import time

from confluent_kafka import (Consumer, ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaError,
                             KafkaException, OFFSET_BEGINNING, Producer,
                             TopicPartition)
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource, NewPartitions, NewTopic,
                                   OffsetSpec)

from common import BOOTSTRAP, check, expect, finish, name, wait_until

TOPIC = name("cfa-cfg")
RECORDS_TOPIC = name("cfa-records")
GROUP_TOPIC = name("cfa-gtopic")
GROUP = name("cfa-live")
RESET_GROUP = name("cfa-reset")
CLIENT_ID = "cfa-member"
META = "cfa-commit-meta"

admin = AdminClient({"bootstrap.servers": BOOTSTRAP})


def error_name(e):
    """The Kafka error name a failed future raised (e.g. INVALID_CONFIG), or the exception."""
    if isinstance(e, KafkaException) and e.args and isinstance(e.args[0], KafkaError):
        return e.args[0].name()
    return repr(e)


def expect_refused(fut, want, what):
    try:
        got = fut.result(timeout=15)
    except KafkaException as e:
        expect(error_name(e) == want, f"{what}: expected {want}, got {error_name(e)} ({e})")
        return
    raise AssertionError(f"{what}: expected {want}, got success ({got!r})")


def topic_names():
    return set(admin.list_topics(timeout=10).topics)


def partition_count(topic):
    md = admin.list_topics(topic=topic, timeout=10)
    t = md.topics.get(topic)
    return None if t is None or t.error is not None else len(t.partitions)


def source_name(src):
    """ConfigEntry.source comes from the C layer as an int; the enum's name reads better."""
    try:
        return ConfigSource(src).name
    except ValueError:
        return str(src)


def describe(topic):
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return admin.describe_configs([res])[res].result(timeout=15)


def expect_config(configs, key, value, source, what):
    e = configs.get(key)
    expect(e is not None, f"{what}: {key} missing from DescribeConfigs ({len(configs)} entries: "
                          f"{sorted(configs)[:20]})")
    got = (e.value, source_name(e.source))
    expect(got == (value, source), f"{what}: expected {key}={value} source {source}, got "
                                   f"{key}={e.value} source {source_name(e.source)}")


def produce(topic, n, partition=None):
    p = Producer({"bootstrap.servers": BOOTSTRAP, "acks": "all", "linger.ms": 5})
    errors = []
    for i in range(n):
        kw = {} if partition is None else {"partition": partition}
        p.produce(topic, key=f"k{i % 7}".encode(), value=f"v-{i}".encode(),
                  on_delivery=lambda err, _m: err and errors.append(err), **kw)
        p.poll(0)
    left = p.flush(30)
    expect(left == 0 and not errors, f"produce to {topic}: {left} undelivered, errors {errors[:3]}")


def test_create_with_configs():
    fs = admin.create_topics([NewTopic(TOPIC, num_partitions=3, replication_factor=1,
                                       config={"cleanup.policy": "compact",
                                               "retention.ms": "3600000"})])
    fs[TOPIC].result(timeout=15)
    expect(partition_count(TOPIC) == 3, f"expected 3 partitions, metadata shows {partition_count(TOPIC)}")


def test_create_unknown_config_refused():
    bad = name("cfa-bad-name")
    fs = admin.create_topics([NewTopic(bad, num_partitions=1, replication_factor=1,
                                       config={"no.such.config": "1"})])
    expect_refused(fs[bad], "INVALID_CONFIG", "create with no.such.config=1")
    expect(bad not in topic_names(), f"{bad} exists after a refused create")


def test_create_invalid_value_refused():
    bad = name("cfa-bad-value")
    fs = admin.create_topics([NewTopic(bad, num_partitions=1, replication_factor=1,
                                       config={"cleanup.policy": "nonsense"})])
    expect_refused(fs[bad], "INVALID_CONFIG", "create with cleanup.policy=nonsense")
    expect(bad not in topic_names(), f"{bad} exists after a refused create")


def test_describe_configs():
    configs = describe(TOPIC)
    expect_config(configs, "cleanup.policy", "compact", "DYNAMIC_TOPIC_CONFIG", "set at create")
    expect_config(configs, "retention.ms", "3600000", "DYNAMIC_TOPIC_CONFIG", "set at create")
    seg = configs.get("segment.bytes")
    expect(seg is not None and seg.value and source_name(seg.source) in
           ("DEFAULT_CONFIG", "STATIC_BROKER_CONFIG"),
           f"segment.bytes (not set on the topic): expected a value with source DEFAULT_CONFIG or "
           f"STATIC_BROKER_CONFIG, got {seg and (seg.value, source_name(seg.source))}")


def test_describe_broker_configs():
    broker_id = str(list(admin.list_topics(timeout=10).brokers)[0])
    res = ConfigResource(ConfigResource.Type.BROKER, broker_id)
    configs = admin.describe_configs([res])[res].result(timeout=15)
    expect("log.retention.ms" in configs or "log.segment.bytes" in configs,
           f"broker {broker_id}: expected log.retention.ms or log.segment.bytes among "
           f"{sorted(configs)[:20]}")


def test_alter_configs_replaces():
    # AlterConfigs (non-incremental) replaces the topic's whole set: cleanup.policy goes back to
    # its default.
    res = ConfigResource(ConfigResource.Type.TOPIC, TOPIC, set_config={"retention.ms": "7200000"})
    admin.alter_configs([res])[res].result(timeout=15)
    configs = describe(TOPIC)
    expect_config(configs, "retention.ms", "7200000", "DYNAMIC_TOPIC_CONFIG", "after AlterConfigs")
    cp = configs.get("cleanup.policy")
    expect(cp is not None and (cp.value, source_name(cp.source)) != ("compact", "DYNAMIC_TOPIC_CONFIG"),
           f"AlterConfigs replaces: expected cleanup.policy back to its default, got "
           f"{cp and (cp.value, source_name(cp.source))}")


def test_incremental_alter():
    res = ConfigResource(ConfigResource.Type.TOPIC, TOPIC, incremental_configs=[
        ConfigEntry("cleanup.policy", "compact,delete", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
    ])
    admin.incremental_alter_configs([res])[res].result(timeout=15)
    configs = describe(TOPIC)
    cp = configs.get("cleanup.policy")
    got = cp and (sorted(cp.value.split(",")), source_name(cp.source))
    expect(got == (["compact", "delete"], "DYNAMIC_TOPIC_CONFIG"),
           f"after SET: expected cleanup.policy=compact,delete source DYNAMIC_TOPIC_CONFIG, got {got}")
    rm = configs.get("retention.ms")
    expect(rm is not None and source_name(rm.source) != "DYNAMIC_TOPIC_CONFIG",
           f"after DELETE retention.ms: expected its default, got "
           f"{rm and (rm.value, source_name(rm.source))}")


def test_incremental_alter_invalid_refused():
    res = ConfigResource(ConfigResource.Type.TOPIC, TOPIC, incremental_configs=[
        ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET)])
    expect_refused(admin.incremental_alter_configs([res])[res], "INVALID_CONFIG",
                   "IncrementalAlterConfigs retention.ms=soon")
    rm = describe(TOPIC).get("retention.ms")
    expect(rm is not None and rm.value != "soon", f"retention.ms changed by a refused alter: {rm}")


def test_add_partitions():
    admin.create_partitions([NewPartitions(TOPIC, 5)])[TOPIC].result(timeout=15)
    expect(partition_count(TOPIC) == 5, f"expected 5 partitions, metadata shows {partition_count(TOPIC)}")
    expect_refused(admin.create_partitions([NewPartitions(TOPIC, 2)])[TOPIC], "INVALID_PARTITIONS",
                   "shrinking 5 -> 2 partitions")


def test_delete_records():
    admin.create_topics([NewTopic(RECORDS_TOPIC, num_partitions=1, replication_factor=1)])[
        RECORDS_TOPIC].result(timeout=15)
    produce(RECORDS_TOPIC, 100, partition=0)
    tp = TopicPartition(RECORDS_TOPIC, 0, 40)
    deleted = admin.delete_records([tp])
    low = list(deleted.values())[0].result(timeout=15).low_watermark
    expect(low == 40, f"delete_records before 40: expected low_watermark 40, got {low}")
    fut = admin.list_offsets({TopicPartition(RECORDS_TOPIC, 0): OffsetSpec.earliest()})
    earliest = list(fut.values())[0].result(timeout=15).offset
    expect(earliest == 40, f"ListOffsets earliest after delete_records: expected 40, got {earliest}")
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": name("cfa-dr-reader"),
                  "enable.auto.commit": False})
    c.assign([TopicPartition(RECORDS_TOPIC, 0, OFFSET_BEGINNING)])
    first = None
    deadline = time.time() + 30
    while first is None and time.time() < deadline:
        m = c.poll(1.0)
        if m is not None and not m.error():
            first = m.offset()
    c.close()
    expect(first == 40, f"a consumer from the beginning: expected first offset 40, got {first}")


def group_consumer(group):
    return Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": group, "client.id": CLIENT_ID,
                     "enable.auto.commit": False, "auto.offset.reset": "earliest",
                     "session.timeout.ms": 10000})


def join(c, topic, partitions):
    c.subscribe([topic])
    wait_until(lambda: (c.poll(0.2), len(c.assignment()) == partitions)[1], 60,
               f"the consumer to be assigned {partitions} partitions")


LIVE = {}


def test_live_group_commit_metadata():
    admin.create_topics([NewTopic(GROUP_TOPIC, num_partitions=2, replication_factor=1)])[
        GROUP_TOPIC].result(timeout=15)
    produce(GROUP_TOPIC, 30, partition=0)
    produce(GROUP_TOPIC, 30, partition=1)
    c = group_consumer(GROUP)
    LIVE["c"] = c
    join(c, GROUP_TOPIC, 2)
    c.commit(offsets=[TopicPartition(GROUP_TOPIC, p, 5 + p, metadata=META) for p in (0, 1)],
             asynchronous=False)
    req = [ConsumerGroupTopicPartitions(GROUP, [TopicPartition(GROUP_TOPIC, 0),
                                                TopicPartition(GROUP_TOPIC, 1)])]
    res = admin.list_consumer_group_offsets(req)[GROUP].result(timeout=15)
    got = sorted((tp.partition, tp.offset, tp.metadata) for tp in res.topic_partitions)
    want = [(0, 5, META), (1, 6, META)]
    expect(got == want, f"list_consumer_group_offsets: expected (partition, offset, metadata) {want}, "
                        f"got {got}")


def test_list_groups_live():
    res = admin.list_consumer_groups().result(timeout=15)
    found = [g for g in res.valid if g.group_id == GROUP]
    expect(found, f"list_consumer_groups with a live member: expected {GROUP}, got "
                  f"{[g.group_id for g in res.valid]} (errors {res.errors})")
    expect(found[0].state == ConsumerGroupState.STABLE,
           f"list_consumer_groups: expected state STABLE, got {found[0].state}")


def test_describe_group_live():
    d = admin.describe_consumer_groups([GROUP])[GROUP].result(timeout=15)
    expect(d.state == ConsumerGroupState.STABLE, f"expected state STABLE, got {d.state}")
    expect(d.partition_assignor, f"expected the assignor (the group's protocol), got "
                                 f"{d.partition_assignor!r}")
    expect(len(d.members) == 1, f"expected 1 member, got {len(d.members)}: {d.members}")
    m = d.members[0]
    expect(m.client_id == CLIENT_ID, f"member client id: expected {CLIENT_ID}, got {m.client_id!r}")
    expect("127.0.0.1" in (m.host or ""), f"member host: expected 127.0.0.1, got {m.host!r}")
    got = sorted((tp.topic, tp.partition) for tp in m.assignment.topic_partitions)
    want = [(GROUP_TOPIC, 0), (GROUP_TOPIC, 1)]
    expect(got == want, f"member assignment: expected {want}, got {got}")


def test_delete_group_refused_while_active():
    # Kafka's GROUP_NOT_EMPTY (68) is NON_EMPTY_GROUP in librdkafka.
    expect_refused(admin.delete_consumer_groups([GROUP])[GROUP], "NON_EMPTY_GROUP",
                   "delete_consumer_groups with a live member")
    d = admin.describe_consumer_groups([GROUP])[GROUP].result(timeout=15)
    expect(d.state == ConsumerGroupState.STABLE and len(d.members) == 1,
           f"after the refused delete: expected STABLE with 1 member, got {d.state} {len(d.members)}")


def test_delete_group_after_leave():
    LIVE.pop("c").close()  # LeaveGroup: the group becomes Empty at once
    d = admin.describe_consumer_groups([GROUP])[GROUP].result(timeout=15)
    expect(d.state == ConsumerGroupState.EMPTY and not d.members,
           f"after the member left: expected EMPTY with no members, got {d.state} {d.members}")
    admin.delete_consumer_groups([GROUP])[GROUP].result(timeout=15)
    res = admin.list_consumer_groups().result(timeout=15)
    left = [g.group_id for g in res.valid if g.group_id == GROUP]
    expect(not left, f"list_consumer_groups after delete: expected no {GROUP}, got {left}")
    req = [ConsumerGroupTopicPartitions(GROUP, [TopicPartition(GROUP_TOPIC, 0)])]
    offs = admin.list_consumer_group_offsets(req)[GROUP].result(timeout=15)
    got = [tp.offset for tp in offs.topic_partitions]
    expect(got == [-1001], f"committed offsets after delete: expected none (-1001), got {got}")


def test_reset_offsets_then_consume():
    # A consumer reads everything and commits; with the group empty, the admin sets partition 0
    # to 10 and partition 1 to 20; the group's next consumer starts exactly there.
    c = group_consumer(RESET_GROUP)
    join(c, GROUP_TOPIC, 2)
    ends = {p: admin.list_offsets({TopicPartition(GROUP_TOPIC, p): OffsetSpec.latest()})
            for p in (0, 1)}
    ends = {p: list(f.values())[0].result(timeout=15).offset for p, f in ends.items()}
    expect(min(ends.values()) > 20, f"need more than 20 records a partition, ends {ends}")
    c.commit(offsets=[TopicPartition(GROUP_TOPIC, p, ends[p]) for p in (0, 1)], asynchronous=False)
    c.close()
    want = {0: 10, 1: 20}
    req = [ConsumerGroupTopicPartitions(RESET_GROUP, [TopicPartition(GROUP_TOPIC, p, o)
                                                      for p, o in want.items()])]
    res = admin.alter_consumer_group_offsets(req)[RESET_GROUP].result(timeout=15)
    errs = [(tp.partition, tp.error) for tp in res.topic_partitions if tp.error]
    expect(not errs, f"alter_consumer_group_offsets: partition errors {errs}")
    offs = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(RESET_GROUP, [TopicPartition(GROUP_TOPIC, p) for p in want])]
    )[RESET_GROUP].result(timeout=15)
    got = {tp.partition: tp.offset for tp in offs.topic_partitions}
    expect(got == want, f"committed after alter: expected {want}, got {got}")
    c = group_consumer(RESET_GROUP)
    c.subscribe([GROUP_TOPIC])
    first = {}
    deadline = time.time() + 60
    while len(first) < 2 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            first.setdefault(m.partition(), m.offset())
    c.close()
    expect(first == want, f"the group's next consumer: expected first offsets {want}, got {first}")


check("confluent admin: create topic with configs (cleanup.policy=compact, retention.ms)",
      test_create_with_configs)
check("confluent admin: create with no.such.config=1 refused INVALID_CONFIG, nothing created",
      test_create_unknown_config_refused)
check("confluent admin: create with cleanup.policy=nonsense refused INVALID_CONFIG, nothing created",
      test_create_invalid_value_refused)
check("confluent admin: describe_configs shows set values with source DYNAMIC_TOPIC_CONFIG, "
      "others as defaults", test_describe_configs)
check("confluent admin: describe_configs of the broker", test_describe_broker_configs)
check("confluent admin: alter_configs replaces the topic's configs", test_alter_configs_replaces)
check("confluent admin: incremental_alter_configs SET and DELETE", test_incremental_alter)
check("confluent admin: incremental_alter_configs retention.ms=soon refused INVALID_CONFIG, unchanged",
      test_incremental_alter_invalid_refused)
check("confluent admin: create_partitions 3 -> 5 (and 5 -> 2 refused)", test_add_partitions)
check("confluent admin: delete_records before 40 moves the earliest offset to 40",
      test_delete_records)
check("confluent admin: list_consumer_group_offsets shows the commit metadata",
      test_live_group_commit_metadata)
check("confluent admin: list_consumer_groups shows the live group, STABLE", test_list_groups_live)
check("confluent admin: describe_consumer_groups: STABLE, member client id, host, assignment",
      test_describe_group_live)
check("confluent admin: delete_consumer_groups refused GROUP_NOT_EMPTY while a member is live",
      test_delete_group_refused_while_active)
check("confluent admin: delete_consumer_groups accepted after the member leaves",
      test_delete_group_after_leave)
check("confluent admin: alter_consumer_group_offsets, then the group's consumer starts there",
      test_reset_offsets_then_consume)
if "c" in LIVE:
    LIVE.pop("c").close()
finish()
