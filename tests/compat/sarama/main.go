// A sarama client against minikafka's Kafka listener: produces records (SyncProducer, acks=all,
// idempotent), consumes them in a consumer group with commits, and makes the ClusterAdmin calls
// operators make. sarama picks its request versions from Config.Version instead of negotiating
// them (KAFKA.md trap 16), so the version under test is a flag. Prints one line per check and
// exits non-zero on the first failure.
//
// Built offline against Debian's packages (scripts/kafka-compat does it):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o target/sarama-compat tests/compat/sarama/main.go
//
// Debian 12 ships sarama 1.22.1 (github.com/Shopify/sarama), whose newest named version is
// V2_2_0_0 and which has no IncrementalAlterConfigs nor DeleteConsumerGroup in its ClusterAdmin:
// a newer version string is accepted (sarama uses the newest requests it knows), DeleteGroups is
// sent to the group coordinator directly, and IncrementalAlterConfigs is reported as skipped.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/Shopify/sarama"
)

var (
	brokers = flag.String("brokers", "127.0.0.1:9092", "bootstrap address")
	version = flag.String("version", "3.6.0", "the Kafka version sarama is configured for")
	records = flag.Int("records", 200, "records to produce and consume")
	prefix  = flag.String("prefix", "sarama", "prefix of the topic and group names")
	timeout = flag.Duration("timeout", 60*time.Second, "longest wait for the consumer group")
)

func ok(check, format string, args ...interface{}) {
	fmt.Printf("ok   %-24s %s\n", check, fmt.Sprintf(format, args...))
}

func fail(check string, err error) {
	fmt.Printf("FAIL %-24s %v\n", check, err)
	os.Exit(1)
}

func str(s string) *string { return &s }

func config(v sarama.KafkaVersion) *sarama.Config {
	c := sarama.NewConfig()
	c.Version = v
	c.ClientID = "sarama-compat"
	c.Metadata.Retry.Max = 5
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Return.Successes = true
	c.Producer.Idempotent = true
	c.Producer.Retry.Max = 5
	c.Producer.Partitioner = sarama.NewHashPartitioner
	c.Net.MaxOpenRequests = 1 // the idempotent producer requires it
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	// sarama 1.22 commits with OffsetCommit v1 unless a retention is set; v1 is below Kafka 4.0's
	// floor (KIP-896), which the broker refuses. A retention makes it v2.
	c.Consumer.Offsets.Retention = 24 * time.Hour
	c.Consumer.Offsets.CommitInterval = 200 * time.Millisecond
	c.Consumer.Return.Errors = true
	return c
}

// handler counts what the group consumes and marks each record for commit.
type handler struct {
	mu   sync.Mutex
	seen map[string]bool
	want int
	done chan struct{}
	once sync.Once
}

func (h *handler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *handler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		s.MarkMessage(m, "")
		h.mu.Lock()
		h.seen[string(m.Value)] = true
		n := len(h.seen)
		h.mu.Unlock()
		if n >= h.want {
			h.once.Do(func() { close(h.done) })
		}
	}
	return nil
}

func main() {
	flag.Parse()
	v, err := sarama.ParseKafkaVersion(*version)
	if err != nil {
		fail("version", err)
	}
	conf := config(v)
	if err := conf.Validate(); err != nil {
		fail("config", err)
	}
	addrs := []string{*brokers}
	topic := fmt.Sprintf("%s-%d", *prefix, time.Now().UnixNano())
	group := topic + "-group"

	admin, err := sarama.NewClusterAdmin(addrs, conf)
	if err != nil {
		fail("connect", err)
	}
	defer admin.Close()
	ok("connect", "Config.Version %s", v)

	// CreateTopics with configs.
	detail := &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1,
		ConfigEntries: map[string]*string{"retention.ms": str("3600000"), "cleanup.policy": str("delete")}}
	if err := admin.CreateTopic(topic, detail, false); err != nil {
		fail("create topic", err)
	}
	ok("create topic", "%s, 2 partitions, retention.ms=3600000", topic)

	// Produce: idempotent, acks=all.
	producer, err := sarama.NewSyncProducer(addrs, conf)
	if err != nil {
		fail("producer", err)
	}
	msgs := make([]*sarama.ProducerMessage, *records)
	for i := range msgs {
		msgs[i] = &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprintf("k%d", i%10)),
			Value: sarama.StringEncoder(fmt.Sprintf("v%d", i))}
	}
	if err := producer.SendMessages(msgs); err != nil {
		if errs, many := err.(sarama.ProducerErrors); many && len(errs) > 0 {
			err = fmt.Errorf("%v; the first: %v", err, errs[0].Err)
		}
		fail("produce", err)
	}
	perPartition := map[int32]int64{}
	for _, m := range msgs {
		if m.Offset+1 > perPartition[m.Partition] {
			perPartition[m.Partition] = m.Offset + 1
		}
	}
	if err := producer.Close(); err != nil {
		fail("produce", err)
	}
	ok("produce", "%d records (idempotent, acks=all), next offsets %v", *records, perPartition)

	// Consume in a group, committing what was marked.
	cg, err := sarama.NewConsumerGroup(addrs, group, conf)
	if err != nil {
		fail("consumer group", err)
	}
	h := &handler{seen: map[string]bool{}, want: *records, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	consumed := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			if err := cg.Consume(ctx, []string{topic}, h); err != nil {
				consumed <- err
				return
			}
		}
		consumed <- nil
	}()
	go func() {
		for err := range cg.Errors() {
			fmt.Printf("     consumer group error: %v\n", err)
		}
	}()
	select {
	case <-h.done:
	case err := <-consumed:
		fail("consume", fmt.Errorf("the group stopped early: %v", err))
	case <-time.After(*timeout):
		fail("consume", fmt.Errorf("%d of %d records in %s", len(h.seen), *records, *timeout))
	}
	ok("consume", "%d records in group %s", len(h.seen), group)

	// The commits (every CommitInterval), as OffsetFetch returns them.
	var mismatch error
	for deadline := time.Now().Add(*timeout); ; time.Sleep(100 * time.Millisecond) {
		committed, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0, 1}})
		if err != nil {
			fail("committed offsets", err)
		}
		mismatch = nil
		for p, next := range perPartition {
			b := committed.GetBlock(topic, p)
			if b == nil || b.Err != sarama.ErrNoError || b.Offset != next {
				mismatch = fmt.Errorf("partition %d: want %d, got %+v", p, next, b)
			}
		}
		if mismatch == nil || time.Now().After(deadline) {
			break
		}
	}
	if mismatch != nil {
		fail("committed offsets", mismatch)
	}
	ok("committed offsets", "%v", perPartition)

	// While the member is live: the group as DescribeGroups shows it.
	groups, err := admin.DescribeConsumerGroups([]string{group})
	if err != nil {
		fail("describe groups", err)
	}
	if len(groups) != 1 || groups[0].Err != sarama.ErrNoError || len(groups[0].Members) != 1 {
		fail("describe groups", fmt.Errorf("want one group with one member, got %+v", groups))
	}
	for id, m := range groups[0].Members {
		if m.ClientId != conf.ClientID {
			fail("describe groups", fmt.Errorf("member %s has client id %q", id, m.ClientId))
		}
		ok("describe groups", "state %s, protocol %s, member client id %s host %s",
			groups[0].State, groups[0].Protocol, m.ClientId, m.ClientHost)
	}
	listed, err := admin.ListConsumerGroups()
	if err != nil {
		fail("list groups", err)
	}
	if _, found := listed[group]; !found {
		fail("list groups", fmt.Errorf("%s not in %v", group, listed))
	}
	ok("list groups", "%d groups, %s among them", len(listed), group)

	cancel()
	if err := cg.Close(); err != nil {
		fail("consume", fmt.Errorf("closing the group: %v", err))
	}
	if err := <-consumed; err != nil {
		fail("consume", err)
	}

	// ListTopics (Metadata, then DescribeConfigs for every topic).
	topics, err := admin.ListTopics()
	if err != nil {
		fail("list topics", err)
	}
	d, found := topics[topic]
	if !found || d.NumPartitions != 2 {
		fail("list topics", fmt.Errorf("%s: found %v, %+v", topic, found, d))
	}
	if r := d.ConfigEntries["retention.ms"]; r == nil || *r != "3600000" {
		fail("list topics", fmt.Errorf("retention.ms of %s: %v", topic, d.ConfigEntries))
	}
	ok("list topics", "%d topics, %s with retention.ms=3600000", len(topics), topic)

	describe := func(check, name, want string) {
		entries, err := admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic})
		if err != nil {
			fail(check, err)
		}
		for _, e := range entries {
			if e.Name == name {
				if e.Value != want {
					fail(check, fmt.Errorf("%s = %q, want %q", name, e.Value, want))
				}
				ok(check, "%d entries, %s=%s (source %v)", len(entries), name, e.Value, e.Source)
				return
			}
		}
		fail(check, fmt.Errorf("no %s among %d entries", name, len(entries)))
	}
	describe("describe configs", "retention.ms", "3600000")

	// AlterConfigs replaces the topic's configs with the ones given.
	if err := admin.AlterConfig(sarama.TopicResource, topic,
		map[string]*string{"retention.ms": str("7200000")}, false); err != nil {
		fail("alter configs", err)
	}
	describe("alter configs", "retention.ms", "7200000")
	fmt.Printf("skip %-24s %s\n", "incremental alter", "sarama 1.22 has no IncrementalAlterConfig")

	// An invalid value is refused.
	if err := admin.AlterConfig(sarama.TopicResource, topic,
		map[string]*string{"cleanup.policy": str("nonsense")}, false); err == nil {
		fail("invalid config", fmt.Errorf("cleanup.policy=nonsense was accepted"))
	} else {
		ok("invalid config", "refused: %v", err)
	}

	if err := admin.CreatePartitions(topic, 3, nil, false); err != nil {
		fail("create partitions", err)
	}
	meta, err := admin.DescribeTopics([]string{topic})
	if err != nil || len(meta) != 1 || len(meta[0].Partitions) != 3 {
		fail("create partitions", fmt.Errorf("after growing to 3: %v %+v", err, meta))
	}
	ok("create partitions", "%s now has 3 partitions", topic)

	// DeleteRecords below offset 2 of the partition with the most records.
	var part int32
	for p, next := range perPartition {
		if next > perPartition[part] {
			part = p
		}
	}
	if err := admin.DeleteRecords(topic, map[int32]int64{part: 2}); err != nil {
		fail("delete records", err)
	}
	client, err := sarama.NewClient(addrs, conf)
	if err != nil {
		fail("delete records", err)
	}
	start, err := client.GetOffset(topic, part, sarama.OffsetOldest)
	client.Close()
	if err != nil || start != 2 {
		fail("delete records", fmt.Errorf("log start of partition %d: %d, %v", part, start, err))
	}
	ok("delete records", "partition %d starts at offset 2", part)

	// DeleteGroups, sent to the coordinator (sarama 1.22's ClusterAdmin lacks it).
	client, err = sarama.NewClient(addrs, conf)
	if err != nil {
		fail("delete group", err)
	}
	coordinator, err := client.Coordinator(group)
	if err != nil {
		fail("delete group", err)
	}
	deleted, err := coordinator.DeleteGroups(&sarama.DeleteGroupsRequest{Groups: []string{group}})
	client.Close()
	if err != nil {
		fail("delete group", err)
	}
	if e := deleted.GroupErrorCodes[group]; e != sarama.ErrNoError {
		fail("delete group", e)
	}
	listed, err = admin.ListConsumerGroups()
	if err != nil {
		fail("delete group", err)
	}
	if _, found := listed[group]; found {
		fail("delete group", fmt.Errorf("%s still listed", group))
	}
	ok("delete group", "%s gone", group)

	if err := admin.DeleteTopic(topic); err != nil {
		fail("delete topic", err)
	}
	ok("delete topic", "%s", topic)
	fmt.Println("sarama: all checks passed")
}
