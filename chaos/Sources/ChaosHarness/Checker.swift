import AsyncHTTPClient
import Foundation
import NIOCore
import OrderShop
import RedisClient
import StreamWorker

/// What the checker found. Every count that must be zero has a violation naming it when it is not.
public struct CheckResult: Codable, Sendable {
    public var commands: [String: Int] = [:]
    public var events = 0
    /// Commands answered 200 whose event is missing.
    public var lostEvents = 0
    /// Events no command of the run asked for (injections aside), or a command's event twice.
    public var unexpectedEvents = 0
    public var duplicateEvents = 0
    /// Commands answered 4xx that took effect anyway.
    public var refusedButApplied = 0
    /// Unknown-outcome commands that took effect (Jepsen's "recovered").
    public var recovered = 0
    public var unknownNotApplied = 0
    public var expectedMails = 0
    public var mails = 0
    public var lostEffects = 0
    public var duplicateEffects = 0
    public var unexpectedMails = 0
    /// Mails beyond the number the events imply, whatever their keys: duplicates under any key.
    public var excessMails = 0
    public var mailsByKind: [String: Int] = [:]
    public var injected = 0
    /// Entries × groups reading them: each is delivered at least once.
    public var deliverable = 0
    public var deadLetters = 0
    public var deadLettersMissing = 0
    public var deadLettersUnexpected = 0
    public var groups: [GroupStatus] = []
    public var readModelMismatches: [String: Int] = [:]
    public var negativeStock = 0
    public var stockMismatches = 0
    public var examples: [String] = []
    public var violations: [String] = []
}

/// The checker, run after the drain. It trusts nothing the system says about itself: it reads
/// the streams, `mail:sent`, the groups and the dead letters from Redis, and the read models
/// through the gateway, and compares them with the commands the clients sent.
struct Checker {
    let pool: RedisConnectionPool
    let http: HTTPClient
    let gateway: String

    func check(records: [CommandRecord]) async throws -> CheckResult {
        var r = CheckResult()
        for rec in records { r.commands[rec.outcome.rawValue, default: 0] += 1 }
        r.commands["total"] = records.count

        // Every entry of every entity stream.
        var entries: [String: [StreamEntry]] = [:]
        for type in EntityType.allCases {
            for action in EventAction.allCases {
                let stream = type.stream(action)
                entries[stream] = try await readAll(stream)
            }
        }
        let injectedIDs: [String: Set<String>] = entries.mapValues { Set($0.filter { $0["chaos_injection"] != nil }.map(\.id)) }
        r.injected = injectedIDs.values.reduce(0) { $0 + $1.count }
        r.events = entries.values.reduce(0) { $0 + $1.count } - r.injected
        r.deliverable = WorkerStreams.subscriptions.reduce(0) { $0 + (entries[$1.stream]?.count ?? 0) }

        // 1. Commands against events, by trace id.
        var byTrace: [String: [(stream: String, entityID: String)]] = [:]
        for (stream, list) in entries {
            for e in list where e["chaos_injection"] == nil {
                byTrace[e.string("trace_id") ?? "", default: []].append((stream, e.string("entity_id") ?? ""))
            }
        }
        let traces = Set(records.map(\.trace))
        for (trace, list) in byTrace where !traces.contains(trace) {
            r.unexpectedEvents += list.count
            note(&r, "event with unknown trace '\(trace)' in \(list[0].stream)")
        }
        for rec in records {
            let stream = "events:{\(rec.type)}_\(rec.action)"
            let own = (byTrace[rec.trace] ?? []).filter { $0.stream == stream }
            let applied = !own.isEmpty
            var perID: [String: Int] = [:]
            for e in own { perID[e.entityID, default: 0] += 1 }
            for (id, n) in perID where n > 1 {
                r.duplicateEvents += n - 1
                note(&r, "\(rec.action) \(rec.type) \(id) appended \(n) times (trace \(rec.trace))")
            }
            switch rec.outcome {
            case .ok:
                let wanted = rec.ids.isEmpty ? [""] : rec.ids
                for id in wanted where perID[id] == nil && !(id.isEmpty && applied) {
                    r.lostEvents += 1
                    note(&r, "lost: \(rec.action) \(rec.type) \(id) answered \(rec.status ?? 0) but no event in \(stream) (trace \(rec.trace))")
                }
            case .failed:
                if applied {
                    r.refusedButApplied += 1
                    note(&r, "\(rec.action) \(rec.type) answered \(rec.status ?? 0) but its event is in \(stream) (trace \(rec.trace))")
                }
            case .unknown:
                if applied { r.recovered += 1 } else { r.unknownNotApplied += 1 }
            }
        }

        // 2. Mails: exactly one per key the events imply.
        var expected: Set<String> = []
        for sub in WorkerStreams.subscriptions {
            for e in entries[sub.stream] ?? [] where e["chaos_injection"] == nil {
                expected.insert("\(sub.group):\(e.string("event_id") ?? e.id)")
            }
        }
        r.expectedMails = expected.count
        let mails = try await MailLog(pool: pool).all()
        r.mails = mails.count
        var perKey: [String: Int] = [:]
        for m in mails {
            perKey[m.key, default: 0] += 1
            r.mailsByKind[m.kind?.rawValue ?? "other", default: 0] += 1
        }
        for key in expected where perKey[key] == nil {
            r.lostEffects += 1
            note(&r, "lost effect: no mail with key \(key)")
        }
        for (key, n) in perKey {
            if !expected.contains(key) {
                r.unexpectedMails += n
                note(&r, "unexpected mail: key \(key) matches no event")
            } else if n > 1 {
                r.duplicateEffects += n - 1
                note(&r, "duplicate effect: \(n) mails with key \(key)")
            }
        }

        r.excessMails = max(0, mails.count - expected.count)

        // 3. Groups drained; dead letters are exactly the injections.
        let inspector = GroupInspector(pool: pool)
        for sub in WorkerStreams.subscriptions {
            let status = try await inspector.groupStatus(stream: sub.stream, group: sub.group)
            r.groups.append(status)
            let letters = try await DeadLetters(pool: pool, stream: sub.stream, group: sub.group).list(count: 100_000)
            r.deadLetters += letters.count
            let got = Set(letters.map(\.originalID))
            let want = injectedIDs[sub.stream] ?? []
            for id in want.subtracting(got) {
                r.deadLettersMissing += 1
                note(&r, "injected malformed \(sub.stream) \(id) is not in the dead letters of \(sub.group)")
            }
            for letter in letters where !want.contains(letter.originalID) {
                r.deadLettersUnexpected += 1
                note(&r, "dead letter \(sub.stream) \(letter.originalID) (\(sub.group)) was not injected: \(letter.reason) \(letter.error.prefix(120))")
            }
        }

        // 4. Read models equal a fresh replay of the streams.
        let store = EventStore(pool: pool)
        var replayed: [EntityType: [String: JSONValue]] = [:]
        for type in EntityType.allCases {
            let projection = try await store.replay(type)
            var fromStreams: [String: JSONValue] = [:]
            for e in projection.live { fromStreams[e.id] = try? JSONCoding.decode(JSONValue.self, from: e.state.json) }
            replayed[type] = fromStreams
            let served = try await list(type)
            var mismatches = 0
            for id in Set(fromStreams.keys).union(served.keys) where fromStreams[id] != served[id] {
                mismatches += 1
                note(&r, "read model \(type) \(id): served \(served[id].map { "\($0)" } ?? "nothing"), replay says \(fromStreams[id].map { "\($0)" } ?? "nothing")")
            }
            r.readModelMismatches[type.rawValue] = mismatches
        }

        // 5. Stock: never negative, and equal to the initial stock minus the units of live orders
        // (the load never updates or deletes stock records, so nothing else moves it).
        var initial: [String: (inventory: String, amount: Int)] = [:]
        for e in entries[EntityType.inventory.stream(.created)] ?? [] {
            if let o = try? JSONCoding.decode(JSONValue.self, from: e["entity"] ?? []), let pid = o["product_id"]?.stringValue,
                let id = o["id"]?.stringValue, let amount = o["amount"]?.numberValue
            {
                initial[pid] = (id, Int(amount))
            }
        }
        for action in EventAction.allCases {
            for e in entries[EntityType.inventory.stream(action)] ?? [] {
                if let o = try? JSONCoding.decode(JSONValue.self, from: e["entity"] ?? []), let amount = o["amount"]?.numberValue, amount < 0 {
                    r.negativeStock += 1
                    note(&r, "stock went negative: \(e.string("entity_id") ?? "?") amount \(amount) in entry \(e.id)")
                }
            }
        }
        var reserved: [String: Int] = [:]
        for (_, order) in replayed[.order] ?? [:] {
            for pid in order["product_ids"]?.arrayValue?.compactMap(\.stringValue) ?? [] { reserved[pid, default: 0] += 1 }
        }
        for (pid, inv) in initial {
            let want = inv.amount - reserved[pid, default: 0]
            let have = (replayed[.inventory]?[inv.inventory]?["amount"]?.numberValue).map { Int($0) }
            if have != want {
                r.stockMismatches += 1
                note(&r, "stock of product \(pid): \(have.map(String.init) ?? "none"), the orders imply \(want)")
            }
        }

        // The verdict.
        func must(_ n: Int, _ what: String) { if n > 0 { r.violations.append("\(what) = \(n)") } }
        must(r.lostEvents, "lost events (commands answered 200 without their event)")
        must(r.duplicateEvents, "duplicate events")
        must(r.unexpectedEvents, "unexpected events")
        must(r.refusedButApplied, "refused commands that took effect")
        must(r.lostEffects, "lost effects (mails the events imply but never sent)")
        must(r.duplicateEffects, "duplicate effects (mails sent more than once)")
        must(r.unexpectedMails, "unexpected mails (no event implies them)")
        must(r.excessMails, "mails beyond what the events imply (duplicate effects under any key)")
        let pending = r.groups.reduce(0) { $0 + $1.pending }
        let lag = r.groups.reduce(0) { $0 + ($1.lag ?? 1) }
        must(pending, "pending entries after the drain")
        must(lag, "lag after the drain")
        must(r.deadLettersMissing, "injected malformed events not dead-lettered")
        must(r.deadLettersUnexpected, "dead letters that were not injected")
        must(r.readModelMismatches.values.reduce(0, +), "read-model entities that differ from a replay of the streams")
        must(r.negativeStock, "negative stock")
        must(r.stockMismatches, "stock that differs from what the orders imply")
        return r
    }

    private func note(_ r: inout CheckResult, _ text: String) {
        if r.examples.count < 40 { r.examples.append(text) }
    }

    private func readAll(_ stream: String) async throws -> [StreamEntry] {
        var out: [StreamEntry] = []
        var start = "-"
        while true {
            let page = try await pool.send(XRANGE(RedisArgument(stream), start: start, end: "+", count: 1000))
            out += page
            guard page.count == 1000, let last = page.last else { return out }
            start = "(" + last.id
        }
    }

    /// GET /<plural> through the gateway, by id.
    private func list(_ type: EntityType) async throws -> [String: JSONValue] {
        let response = try await http.execute(HTTPClientRequest(url: gateway + "/" + type.plural), timeout: .seconds(60))
        let body = try await response.body.collect(upTo: 256 << 20)
        guard response.status.code == 200 else { throw ChaosError("GET /\(type.plural) answered \(response.status.code)") }
        let json = try JSONCoding.decode(JSONValue.self, from: body.readableBytesView)
        var out: [String: JSONValue] = [:]
        for item in json.arrayValue ?? [] { if let id = item["id"]?.stringValue { out[id] = item } }
        return out
    }
}
