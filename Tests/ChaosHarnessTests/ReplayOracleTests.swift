import OrderShop
import RedisClient
import Testing

@testable import ChaosHarness

/// The checker's own replay (``ReplayOracle``): what a type's read model must serve, decided
/// without ``Projection`` (the fold `rebuild` and `snapshot` use), and equal to it on every
/// history the services write.
struct ReplayOracleTests {
    /// An entry as the scripts write it: `entity_id`, `version`, the entity as JSON.
    static func entry(_ id: String, _ entity: String, version: Int, name: String = "n", extra: [StreamField] = []) -> StreamEntry {
        StreamEntry(id: id, fields: [
            StreamField("event_id", "ev-\(entity)-\(version)-\(id)"), StreamField("entity_id", entity), StreamField("version", String(version)),
            StreamField("entity", "{\"id\":\"\(entity)\",\"name\":\"\(name)\"}"),
        ] + extra)
    }

    static func state(_ entity: String, _ name: String) -> JSONValue { .object(["id": .string(entity), "name": .string(name)]) }

    @Test func theHighestVersionDecidesWhateverOrderTheStreamsInterleaveIn() {
        // After a failover to a node whose clock is behind, an update's entry id can be below
        // its creation's (another stream): the update is still the entity's state.
        let live = ReplayOracle.live([
            .created: [Self.entry("200-0", "a", version: 1, name: "first")],
            .updated: [Self.entry("150-0", "a", version: 2, name: "second")],
        ])
        #expect(live == ["a": Self.state("a", "second")])
    }

    @Test func aDeletionIsFinalAgainstAnOlderChangeAppendedAgain() {
        // A publisher's duplicate of the update, appended after the deletion (the `duplicate`
        // fault): the same event again, not a change that brings the entity back.
        let live = ReplayOracle.live([
            .created: [Self.entry("100-0", "a", version: 1), Self.entry("101-0", "b", version: 1)],
            .updated: [Self.entry("110-0", "a", version: 2), Self.entry("130-0", "a", version: 2, extra: [StreamField(History.duplicateField, "110-0")])],
            .deleted: [Self.entry("120-0", "a", version: 3)],
        ])
        #expect(live == ["b": Self.state("b", "n")])
    }

    /// An update or a deletion of an id no entry created (an XADD by hand; the harness appends
    /// one before each rebuild) makes nothing live, whatever its version.
    @Test func changesOfAnIdNeverCreatedMakeNothingLive() {
        let live = ReplayOracle.live([
            .created: [Self.entry("100-0", "a", version: 1)],
            .updated: [Self.entry("110-0", "ghost", version: 2), Self.entry("111-0", "a", version: 2, name: "second")],
            .deleted: [Self.entry("120-0", "gone", version: 2)],
        ])
        #expect(live == ["a": Self.state("a", "second")])
    }

    @Test func injectedAndMalformedEntriesAreNoEvents() {
        let wellFormedButInjected = Self.entry("101-0", "x", version: 1, extra: [StreamField(History.injectionField, "m1")])
        let live = ReplayOracle.live([
            .created: [
                Self.entry("100-0", "a", version: 1), wellFormedButInjected,
                StreamEntry(id: "102-0", fields: [StreamField("entity_id", "y"), StreamField("version", "1"), StreamField("entity", "{\"id\": \"broken")]),
                StreamEntry(id: "103-0", fields: [StreamField("entity_id", "z"), StreamField("version", "1"), StreamField("entity", "{\"id\":\"other\"}")]),
                StreamEntry(id: "104-0", fields: [StreamField("entity_id", "w"), StreamField("version", "0"), StreamField("entity", "{\"id\":\"w\"}")]),
                StreamEntry(id: "105-0", fields: [StreamField("entity_id", "v"), StreamField("entity", "{\"id\":\"v\"}")]),
                StreamEntry(id: "106-0", fields: [StreamField("entity_id", "u"), StreamField("version", "1"), StreamField("entity", "[\"u\"]")]),
            ],
            // A higher version that is malformed does not stand for the entity either.
            .updated: [StreamEntry(id: "110-0", fields: [StreamField("entity_id", "a"), StreamField("version", "2"), StreamField("entity", "{\"id\": 42}")])],
        ])
        #expect(live == ["a": Self.state("a", "n")])
    }

    /// Histories as the services write them (each change its entity's version + 1, nothing after
    /// a deletion, each stream's ids increasing, the three streams' ids interleaved with clock
    /// skew between them, a publisher's duplicates): the oracle and `Projection` agree, so a
    /// difference in a chaos run is a defect of one fold, not of the rule.
    @Test(arguments: 0..<40)
    func agreesWithProjectionOnHistoriesTheServicesWrite(seed: Int) {
        var random = SplitMix64(seed: UInt64(seed) &* 7919 &+ 17)
        var entries: [EventAction: [StreamEntry]] = [.created: [], .updated: [], .deleted: []]
        var last: [EventAction: StreamID] = [:]
        var clock: UInt64 = 1_000
        func append(_ action: EventAction, _ entry: (String) -> StreamEntry) {
            // Each stream's next id is above its last; the clock may run behind another stream's.
            clock += UInt64.random(in: 0...3, using: &random)
            let skewed = clock > 5 ? clock - UInt64.random(in: 0...5, using: &random) : clock
            var id = StreamID(milliseconds: skewed, sequence: 0)
            if let previous = last[action], id <= previous { id = StreamID(milliseconds: previous.milliseconds, sequence: previous.sequence + 1) }
            last[action] = id
            entries[action, default: []].append(entry(id.description))
        }
        var open: [(id: String, version: Int)] = []
        for step in 0..<120 {
            let roll = Int.random(in: 0..<10, using: &random)
            if roll < 3 || open.isEmpty {
                let id = "e\(step)"
                append(.created) { Self.entry($0, id, version: 1, name: "v1") }
                open.append((id, 1))
            } else if roll < 8 {
                let i = Int.random(in: 0..<open.count, using: &random)
                open[i].version += 1
                let (id, version) = open[i]
                append(.updated) { Self.entry($0, id, version: version, name: "v\(version)") }
            } else if roll < 9 {
                let (id, version) = open.remove(at: Int.random(in: 0..<open.count, using: &random))
                append(.deleted) { Self.entry($0, id, version: version + 1, name: "gone") }
            } else if let action = [EventAction.created, .updated, .deleted].randomElement(using: &random), let original = entries[action]?.randomElement(using: &random) {
                append(action) { StreamEntry(id: $0, fields: original.fields + [StreamField(History.duplicateField, original.id)]) }
            }
        }
        var events: [RecordedEvent] = []
        for (action, list) in entries { for e in list { if let event = RecordedEvent(e, action: action) { events.append(event) } } }
        var folded: [String: JSONValue] = [:]
        for e in Projection(events).live { folded[e.id] = try? JSONCoding.decode(JSONValue.self, from: e.state.json) }
        #expect(!folded.isEmpty)
        #expect(ReplayOracle.live(entries) == folded)
    }
}
