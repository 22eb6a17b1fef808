// kafkajs's admin client against minikafka (run by scripts/kafka-compat, kafkajs from
// tests/compat/kafkajs/package-lock.json): a topic created with configEntries (an invalid config
// refused with INVALID_CONFIG and nothing created), describeConfigs with each value's source,
// alterConfigs, createPartitions, deleteTopicRecords (the earliest offset moves), listGroups /
// describeGroups / deleteGroups with a live member, fetchOffsets with the commit metadata, and
// resetOffsets / setOffsets followed by a consumer that starts where they were set.
// Prints `PASS name` or `FAIL name: why` a check; exits non-zero if any failed. Every wait is bounded.
'use strict'

const { Kafka, logLevel, ConfigResourceTypes, ConfigSource, AssignerProtocol, Partitioners } =
  require('kafkajs')

const BOOTSTRAP = process.env.KAFKA_BOOTSTRAP
const RUN_ID = process.env.COMPAT_RUN_ID || String(process.pid)
const name = prefix => `${prefix}-${RUN_ID}`

const TOPIC = name('kjs-cfg')
const RECORDS_TOPIC = name('kjs-records')
const GROUP_TOPIC = name('kjs-gtopic')
const GROUP = name('kjs-live')
const RESET_GROUP = name('kjs-reset')
const CLIENT_ID = 'kjs-member'
const META = 'kjs-commit-meta'

// kafkajs's errors go to stderr as JSON lines; the last one is kept for the failure message, and a
// consumer that crashed for good (the one admin.setOffsets runs inside, say) fails the current
// check at once: its promise would never settle.
let lastKafkaError = null
let onFatalCrash = null
const logCreator = () => ({ namespace, label, log }) => {
  const { message, ...extra } = log
  console.error(JSON.stringify({ level: label, logger: namespace, message, ...extra }))
  lastKafkaError = `${namespace} ${message}${extra.error ? `: ${extra.error}` : ''}`
  if (onFatalCrash && /^Crash: KafkaJSNonRetriableError/.test(message)) onFatalCrash(lastKafkaError)
}

// Few retries: a refused or unsupported call should fail in seconds, not after kafkajs's backoff.
const kafka = (clientId = 'kjs-admin') =>
  new Kafka({
    clientId,
    brokers: [BOOTSTRAP],
    logLevel: logLevel.ERROR,
    logCreator,
    retry: { retries: 2, initialRetryTime: 100, maxRetryTime: 1000 },
  })
const admin = kafka().admin()

// A check is bounded: a kafkajs call whose promise never settles (its internal consumer crashed,
// say) fails the check instead of stalling the suite.
const CHECK_TIMEOUT_MS = 90000
let failed = 0
let current = null
async function check(label, fn) {
  const start = Date.now()
  current = label
  lastKafkaError = null
  let timer
  try {
    await Promise.race([fn(), new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer after ${CHECK_TIMEOUT_MS / 1000}s ` +
        `(kafkajs's last error: ${lastKafkaError})`)), CHECK_TIMEOUT_MS)
      onFatalCrash = why => reject(new Error(`a kafkajs consumer crashed: ${why}`))
    })])
    clearTimeout(timer)
    onFatalCrash = null
    console.log(`PASS ${label} (${((Date.now() - start) / 1000).toFixed(1)}s)`)
  } catch (e) {
    clearTimeout(timer)
    onFatalCrash = null
    failed += 1
    console.log(`FAIL ${label}: ${describeError(e)}`)
    console.error(e)
  }
  current = null
}

// Node exits when nothing is pending: a promise that can no longer settle would end the script
// silently, with status 0, in the middle of a check.
process.on('beforeExit', () => {
  if (current === null) return
  console.log(`FAIL ${current}: kafkajs stopped with the call unsettled (its last error: ${lastKafkaError})`)
  process.exit(1)
})

function expect(cond, msg) {
  if (!cond) throw new Error(msg)
}

// The Kafka error type(s) a kafkajs error carries (e.g. INVALID_CONFIG), else its name and message.
function errorType(e) {
  if (e.type) return e.type
  if (e.errors) return e.errors.map(errorType).join(',')
  if (e.groups) return e.groups.map(g => (g.error && g.error.type) || g.errorCode).join(',')
  if (e.partitions) return e.partitions.map(p => (p.error && p.error.type) || p.error).join(',')
  return `${e.name}: ${e.message}`
}

// A failure line: the message, plus the API kafkajs found unsupported or the broker's error types.
function describeError(e) {
  if (!e || !e.message) return String(e)
  if (e.apiName) return `${e.message}: ${e.apiName} (api key ${e.apiKey})`
  if (e.errors || e.groups || e.partitions) return `${e.message}: ${errorType(e)}`
  return e.message
}

async function expectRefused(promise, want, what) {
  let got
  try {
    got = await promise
  } catch (e) {
    expect(errorType(e) === want, `${what}: expected ${want}, got ${errorType(e)} (${describeError(e)})`)
    return
  }
  throw new Error(`${what}: expected ${want}, got success (${JSON.stringify(got)})`)
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

async function waitUntil(pred, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await pred()) return
    await sleep(100)
  }
  throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}`)
}

const sourceName = src => Object.keys(ConfigSource).find(k => ConfigSource[k] === src) || String(src)

async function describe(topic) {
  const { resources } = await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }],
    includeSynonyms: false,
  })
  const r = resources[0]
  expect(r.errorCode === 0, `describeConfigs ${topic}: error code ${r.errorCode} ${r.errorMessage}`)
  return Object.fromEntries(r.configEntries.map(e => [e.configName, e]))
}

function expectConfig(configs, key, value, source, what) {
  const e = configs[key]
  expect(e, `${what}: ${key} missing from describeConfigs (${Object.keys(configs).slice(0, 20)})`)
  const got = [e.configValue, sourceName(e.configSource)]
  expect(got[0] === value && got[1] === source,
    `${what}: expected ${key}=${value} source ${source}, got ${key}=${got[0]} source ${got[1]}`)
}

async function partitionCount(topic) {
  const { topics } = await admin.fetchTopicMetadata({ topics: [topic] })
  return topics[0].partitions.length
}

async function produce(topic, n, partition) {
  const p = kafka('kjs-producer').producer({ createPartitioner: Partitioners.DefaultPartitioner })
  await p.connect()
  const messages = []
  for (let i = 0; i < n; i++) {
    const m = { key: `k${i % 7}`, value: `v-${i}` }
    if (partition !== undefined) m.partition = partition
    messages.push(m)
  }
  await p.send({ topic, acks: -1, messages })
  await p.disconnect()
}

async function testCreateWithConfigs() {
  const created = await admin.createTopics({
    topics: [{ topic: TOPIC, numPartitions: 3, replicationFactor: 1,
      configEntries: [{ name: 'cleanup.policy', value: 'compact' },
        { name: 'retention.ms', value: '3600000' }] }],
  })
  expect(created === true, `createTopics: expected true (created), got ${created}`)
  const n = await partitionCount(TOPIC)
  expect(n === 3, `expected 3 partitions, metadata shows ${n}`)
}

async function refusedCreate(prefix, entry) {
  const bad = name(prefix)
  await expectRefused(admin.createTopics({
    topics: [{ topic: bad, numPartitions: 1, replicationFactor: 1, configEntries: [entry] }],
  }), 'INVALID_CONFIG', `createTopics with ${entry.name}=${entry.value}`)
  const topics = await admin.listTopics()
  expect(!topics.includes(bad), `${bad} exists after a refused create`)
}

async function testDescribeConfigs() {
  const configs = await describe(TOPIC)
  expectConfig(configs, 'cleanup.policy', 'compact', 'TOPIC_CONFIG', 'set at create')
  expectConfig(configs, 'retention.ms', '3600000', 'TOPIC_CONFIG', 'set at create')
  const seg = configs['segment.bytes']
  expect(seg && seg.configValue &&
    ['DEFAULT_CONFIG', 'STATIC_BROKER_CONFIG'].includes(sourceName(seg.configSource)),
  `segment.bytes (not set on the topic): expected a value with source DEFAULT_CONFIG or ` +
    `STATIC_BROKER_CONFIG, got ${seg && [seg.configValue, sourceName(seg.configSource)]}`)
}

async function testAlterConfigs() {
  // AlterConfigs (kafkajs has no IncrementalAlterConfigs) replaces the topic's whole set:
  // cleanup.policy goes back to its default.
  const { resources } = await admin.alterConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name: TOPIC,
      configEntries: [{ name: 'retention.ms', value: '7200000' }] }],
  })
  expect(resources.length === 1 && resources[0].errorCode === 0,
    `alterConfigs: expected error code 0, got ${JSON.stringify(resources)}`)
  const configs = await describe(TOPIC)
  expectConfig(configs, 'retention.ms', '7200000', 'TOPIC_CONFIG', 'after alterConfigs')
  const cp = configs['cleanup.policy']
  expect(cp && !(cp.configValue === 'compact' && sourceName(cp.configSource) === 'TOPIC_CONFIG'),
    `alterConfigs replaces: expected cleanup.policy back to its default, got ` +
      `${cp && [cp.configValue, sourceName(cp.configSource)]}`)
}

async function testAlterConfigsInvalidRefused() {
  await expectRefused(admin.alterConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name: TOPIC,
      configEntries: [{ name: 'retention.ms', value: 'soon' }] }],
  }), 'INVALID_CONFIG', 'alterConfigs retention.ms=soon')
  const configs = await describe(TOPIC)
  expectConfig(configs, 'retention.ms', '7200000', 'TOPIC_CONFIG', 'after the refused alter')
}

async function testAddPartitions() {
  await admin.createPartitions({ topicPartitions: [{ topic: TOPIC, count: 5 }] })
  const n = await partitionCount(TOPIC)
  expect(n === 5, `expected 5 partitions, metadata shows ${n}`)
  await expectRefused(admin.createPartitions({ topicPartitions: [{ topic: TOPIC, count: 2 }] }),
    'INVALID_PARTITIONS', 'shrinking 5 -> 2 partitions')
}

// A consumer of `group` reading `topic` without committing; resolves to {partition: first offset}
// once every partition in `partitions` delivered a message.
async function firstOffsets(group, topic, partitions) {
  const c = kafka(CLIENT_ID).consumer({ groupId: group, sessionTimeout: 10000, heartbeatInterval: 1000 })
  await c.connect()
  await c.subscribe({ topic, fromBeginning: true })
  const first = {}
  await c.run({ autoCommit: false, eachMessage: async ({ partition, message }) => {
    if (!(partition in first)) first[partition] = Number(message.offset)
  } })
  try {
    await waitUntil(() => partitions.every(p => p in first), 60000,
      `messages from partitions ${partitions} (got ${JSON.stringify(first)})`)
  } finally {
    await c.disconnect()
  }
  return first
}

async function testDeleteRecords() {
  await admin.createTopics({ topics: [{ topic: RECORDS_TOPIC, numPartitions: 1, replicationFactor: 1 }] })
  await produce(RECORDS_TOPIC, 100, 0)
  // kafkajs finds the partition's leader in the metadata it holds: fetchTopicOffsets loads it.
  const before = await admin.fetchTopicOffsets(RECORDS_TOPIC)
  expect(before[0].low === '0' && before[0].high === '100',
    `fetchTopicOffsets before deleting: expected low 0 high 100, got ${JSON.stringify(before)}`)
  await admin.deleteTopicRecords({ topic: RECORDS_TOPIC, partitions: [{ partition: 0, offset: '40' }] })
  const offsets = await admin.fetchTopicOffsets(RECORDS_TOPIC)
  expect(offsets[0].low === '40' && offsets[0].high === '100',
    `fetchTopicOffsets after deleting before 40: expected low 40 high 100, got ${JSON.stringify(offsets)}`)
  const first = await firstOffsets(name('kjs-dr-reader'), RECORDS_TOPIC, [0])
  expect(first[0] === 40, `a consumer from the beginning: expected first offset 40, got ${first[0]}`)
}

const live = {}

async function testLiveGroupCommitMetadata() {
  await admin.createTopics({ topics: [{ topic: GROUP_TOPIC, numPartitions: 2, replicationFactor: 1 }] })
  await produce(GROUP_TOPIC, 30, 0)
  await produce(GROUP_TOPIC, 30, 1)
  const c = kafka(CLIENT_ID).consumer({ groupId: GROUP, sessionTimeout: 10000, heartbeatInterval: 1000 })
  live.c = c
  let joined = false
  c.on(c.events.GROUP_JOIN, () => { joined = true })
  await c.connect()
  await c.subscribe({ topic: GROUP_TOPIC, fromBeginning: true })
  await c.run({ autoCommit: false, eachMessage: async () => {} })
  await waitUntil(() => joined, 60000, 'the consumer to join the group')
  await c.commitOffsets([0, 1].map(p => ({ topic: GROUP_TOPIC, partition: p, offset: String(5 + p), metadata: META })))
  const res = await admin.fetchOffsets({ groupId: GROUP, topics: [GROUP_TOPIC] })
  const got = res[0].partitions.map(p => [p.partition, p.offset, p.metadata]).sort()
  const want = [[0, '5', META], [1, '6', META]]
  expect(JSON.stringify(got) === JSON.stringify(want),
    `fetchOffsets: expected [partition, offset, metadata] ${JSON.stringify(want)}, got ${JSON.stringify(got)}`)
}

async function testListGroupsLive() {
  const { groups } = await admin.listGroups()
  const found = groups.filter(g => g.groupId === GROUP)
  expect(found.length === 1 && found[0].protocolType === 'consumer',
    `listGroups with a live member: expected ${GROUP} with protocol type consumer, got ${JSON.stringify(groups)}`)
}

async function testDescribeGroupLive() {
  const { groups } = await admin.describeGroups([GROUP])
  const d = groups[0]
  expect(d && d.groupId === GROUP && d.errorCode === 0, `describeGroups: got ${JSON.stringify(groups)}`)
  expect(d.state === 'Stable', `expected state Stable, got ${d.state}`)
  expect(d.protocolType === 'consumer' && d.protocol,
    `expected protocol type consumer and the assignor, got ${d.protocolType} ${d.protocol}`)
  expect(d.members.length === 1, `expected 1 member, got ${d.members.length}`)
  const m = d.members[0]
  expect(m.clientId === CLIENT_ID, `member client id: expected ${CLIENT_ID}, got ${m.clientId}`)
  expect((m.clientHost || '').includes('127.0.0.1'), `member host: expected 127.0.0.1, got ${m.clientHost}`)
  const a = AssignerProtocol.MemberAssignment.decode(m.memberAssignment)
  const got = JSON.stringify(a && a.assignment)
  const want = JSON.stringify({ [GROUP_TOPIC]: [0, 1] })
  expect(got === want, `member assignment: expected ${want}, got ${got}`)
}

async function testResetRefusedWhileActive() {
  // kafkajs asks DescribeGroups first and refuses to touch a group with live members.
  let err = null
  try {
    await admin.resetOffsets({ groupId: GROUP, topic: GROUP_TOPIC, earliest: true })
  } catch (e) {
    err = e
  }
  const want = 'The consumer group must have no running instances, current state: Stable'
  expect(err && err.message === want,
    `resetOffsets on the live group: expected "${want}", got ${err ? describeError(err) : 'success'}`)
}

async function testDeleteGroupRefusedWhileActive() {
  await expectRefused(admin.deleteGroups([GROUP]), 'NON_EMPTY_GROUP',
    'deleteGroups with a live member (GROUP_NOT_EMPTY)')
  const { groups } = await admin.describeGroups([GROUP])
  expect(groups[0].state === 'Stable' && groups[0].members.length === 1,
    `after the refused delete: expected Stable with 1 member, got ${groups[0].state} ${groups[0].members.length}`)
}

async function testDeleteGroupAfterLeave() {
  await live.c.disconnect() // LeaveGroup: the group becomes Empty at once
  delete live.c
  const { groups } = await admin.describeGroups([GROUP])
  expect(groups[0].state === 'Empty' && groups[0].members.length === 0,
    `after the member left: expected Empty with no members, got ${groups[0].state} ${groups[0].members.length}`)
  const res = await admin.deleteGroups([GROUP])
  expect(res.length === 1 && res[0].groupId === GROUP && res[0].errorCode === 0,
    `deleteGroups after the member left: expected error code 0, got ${JSON.stringify(res)}`)
  const after = (await admin.listGroups()).groups.filter(g => g.groupId === GROUP)
  expect(after.length === 0, `listGroups after delete: expected no ${GROUP}, got ${JSON.stringify(after)}`)
  const offs = await admin.fetchOffsets({ groupId: GROUP, topics: [GROUP_TOPIC] })
  const got = offs[0].partitions.map(p => p.offset)
  expect(got.every(o => o === '-1'), `committed offsets after delete: expected none (-1), got ${got}`)
}

const offsetsOf = async group => {
  const offs = await admin.fetchOffsets({ groupId: group, topics: [GROUP_TOPIC] })
  return JSON.stringify(offs[0].partitions.map(p => [p.partition, p.offset]).sort())
}

async function testSetOffsets() {
  // A consumer commits the ends; with the group empty, setOffsets 10 and 20 makes the group's
  // next consumer start exactly there.
  const ends = await admin.fetchTopicOffsets(GROUP_TOPIC)
  const c = kafka(CLIENT_ID).consumer({ groupId: RESET_GROUP, sessionTimeout: 10000, heartbeatInterval: 1000 })
  let joined = false
  c.on(c.events.GROUP_JOIN, () => { joined = true })
  await c.connect()
  await c.subscribe({ topic: GROUP_TOPIC, fromBeginning: true })
  await c.run({ autoCommit: false, eachMessage: async () => {} })
  await waitUntil(() => joined, 60000, 'the consumer to join the group')
  await c.commitOffsets(ends.map(o => ({ topic: GROUP_TOPIC, partition: o.partition, offset: o.high })))
  await c.disconnect()
  await admin.setOffsets({ groupId: RESET_GROUP, topic: GROUP_TOPIC,
    partitions: [{ partition: 0, offset: '10' }, { partition: 1, offset: '20' }] })
  const got = await offsetsOf(RESET_GROUP)
  expect(got === JSON.stringify([[0, '10'], [1, '20']]),
    `fetchOffsets after setOffsets: expected [[0,"10"],[1,"20"]], got ${got}`)
  const first = await firstOffsets(RESET_GROUP, GROUP_TOPIC, [0, 1])
  expect(JSON.stringify(first) === JSON.stringify({ 0: 10, 1: 20 }),
    `after setOffsets: expected the group's consumer to start at {0:10,1:20}, got ${JSON.stringify(first)}`)
}

async function testResetOffsetsEarliest() {
  // kafkajs commits the earliest sentinel (-2) itself and Kafka keeps it as sent (kafkajs's own
  // resetOffsets tests expect '-2' back); its consumers read -2 as "from the beginning".
  await admin.resetOffsets({ groupId: RESET_GROUP, topic: GROUP_TOPIC, earliest: true })
  const got = await offsetsOf(RESET_GROUP)
  expect(got === JSON.stringify([[0, '-2'], [1, '-2']]),
    `fetchOffsets after resetOffsets earliest: expected [[0,"-2"],[1,"-2"]] as Kafka keeps them, got ${got}`)
  const first = await firstOffsets(RESET_GROUP, GROUP_TOPIC, [0, 1])
  expect(JSON.stringify(first) === JSON.stringify({ 0: 0, 1: 0 }),
    `after resetOffsets earliest: expected the group's consumer to start at {0:0,1:0}, got ${JSON.stringify(first)}`)
}

async function main() {
  await admin.connect()
  await check('kafkajs admin: createTopics with configEntries (cleanup.policy=compact, retention.ms)',
    testCreateWithConfigs)
  await check('kafkajs admin: createTopics with no.such.config=1 refused INVALID_CONFIG, nothing created',
    () => refusedCreate('kjs-bad-name', { name: 'no.such.config', value: '1' }))
  await check('kafkajs admin: createTopics with cleanup.policy=nonsense refused INVALID_CONFIG, nothing created',
    () => refusedCreate('kjs-bad-value', { name: 'cleanup.policy', value: 'nonsense' }))
  await check('kafkajs admin: describeConfigs shows set values with source TOPIC_CONFIG, others as defaults',
    testDescribeConfigs)
  await check('kafkajs admin: alterConfigs replaces the topic\'s configs', testAlterConfigs)
  await check('kafkajs admin: alterConfigs retention.ms=soon refused INVALID_CONFIG, unchanged',
    testAlterConfigsInvalidRefused)
  await check('kafkajs admin: createPartitions 3 -> 5 (and 5 -> 2 refused)', testAddPartitions)
  await check('kafkajs admin: deleteTopicRecords before 40 moves the earliest offset to 40',
    testDeleteRecords)
  await check('kafkajs admin: fetchOffsets shows the commit metadata', testLiveGroupCommitMetadata)
  await check('kafkajs admin: listGroups shows the live group', testListGroupsLive)
  await check('kafkajs admin: describeGroups: Stable, member client id, host, assignment',
    testDescribeGroupLive)
  await check('kafkajs admin: resetOffsets refused while the group has a live member (state Stable)',
    testResetRefusedWhileActive)
  await check('kafkajs admin: deleteGroups refused GROUP_NOT_EMPTY while a member is live',
    testDeleteGroupRefusedWhileActive)
  await check('kafkajs admin: deleteGroups accepted after the member leaves', testDeleteGroupAfterLeave)
  await check('kafkajs admin: setOffsets 10 and 20, then the group\'s consumer starts there', testSetOffsets)
  await check('kafkajs admin: resetOffsets earliest (-2 kept), then the group\'s consumer starts at 0',
    testResetOffsetsEarliest)
  if (live.c) await live.c.disconnect()
  await admin.disconnect()
}

main().then(
  () => process.exit(failed ? 1 : 0),
  e => {
    console.log(`FAIL kafkajs admin: the script stopped: ${describeError(e)}`)
    console.error(e)
    process.exit(1)
  }
)
