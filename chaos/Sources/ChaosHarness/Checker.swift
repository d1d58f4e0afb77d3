import Foundation
import OrderShop
import RedisClient

/// What the checker found. Every count that must be zero has a violation naming it when it is not.
public struct CheckResult: Codable, Sendable {
    public var commands: [String: Int] = [:]
    /// Kinds of command (type and action) sent at least 20 times of which fewer than 5 % were
    /// answered 200, as "order created: 3 of 950": the run did not exercise them.
    public var rarelyAnswered: [String] = []
    public var events = 0
    /// Commands answered 200 whose event is missing.
    public var lostEvents = 0
    /// Events no command of the run asked for (injections aside), or a command's event twice.
    public var unexpectedEvents = 0
    /// A shop in partitions (``ShopLayout``): events and read-model entities outside their
    /// entity's partition, and keys of the one-partition names. Every query of one entity reads
    /// its id's partition alone, so such an entity is listed yet not found.
    public var misplaced = 0
    public var duplicateEvents = 0
    /// Entries the harness appended again, as a publisher's retry (same event id), on purpose.
    public var publisherDuplicates = 0
    /// Dead letters replayed into their stream (`replayed_from`): the same event again.
    public var replayedEntries = 0
    /// Commands answered 4xx that took effect anyway.
    public var refusedButApplied = 0
    /// Creates sent with an `Idempotency-Key` (each counted once, however often retried), their
    /// attempts after the first, the answers the load dropped on purpose, and the entities
    /// made beyond what their bodies make: a retry with the key created them again.
    public var keyedCreates = 0
    public var keyedRetries = 0
    public var droppedAnswers = 0
    public var keyedCreatesMadeTwice = 0
    /// Unknown-outcome commands that took effect (Jepsen's "recovered").
    public var recovered = 0
    public var unknownNotApplied = 0
    /// Replicated topology: commands answered 503 "may have been applied" (Redis took them, the
    /// replica did not confirm in time), and those of them whose event is not in the history:
    /// lost to a failover, which only unconfirmed writes may be. Counted and listed, never hidden.
    public var unconfirmed = 0
    public var unconfirmedLost = 0
    public var unconfirmedLostTraces: [String] = []
    public var expectedMails = 0
    public var mails = 0
    public var lostEffects = 0
    public var duplicateEffects = 0
    public var unexpectedMails = 0
    /// Mails beyond the number the events imply, whatever their keys: duplicates under any key.
    public var excessMails = 0
    /// Mails of another kind than their event implies, or to an address its customer never had
    /// (``ImpliedMails``).
    public var wrongMails = 0
    public var mailsByKind: [String: Int] = [:]
    /// (event, group) pairs the runtime must apply exactly once: the ledger's expectation.
    public var expectedApplications = 0
    /// Applications the runtime committed (the ``AppliedLedger``), over every event and group.
    public var runtimeApplied = 0
    /// Applications beyond the first of an (event, group): the runtime applied an event twice.
    public var runtimeAppliedTwice = 0
    /// (event, group) pairs the runtime never applied.
    public var runtimeNeverApplied = 0
    /// Applications of event ids no event of the group's streams carries.
    public var runtimeAppliedUnexpected = 0
    /// Applications for which msg answered `duplicate` (the mail had been handed over by an
    /// earlier handling whose settle never committed): expected under at-least-once, shown.
    public var msgAskedTwice = 0
    public var injected = 0
    /// Entries × groups reading them: each is delivered at least once.
    public var deliverable = 0
    public var deadLetters = 0
    public var deadLettersMissing = 0
    public var deadLettersUnexpected = 0
    /// Injected entries dead-lettered more than once by one group (a replay reached it again).
    public var deadLettersTwice = 0
    /// Injected entries dead-lettered again after a replay (their letter carries
    /// `replayed_from`), as "STREAM GROUP MARKER": the judge requires one per replay fault.
    public var replayedLetters: Set<String> = []
    /// Entries removed from the streams before the harness copied them (the history is incomplete).
    public var historyGaps = 0
    public var groups: [History.Group] = []
    public var readModelMismatches: [String: Int] = [:]
    /// Read-model entities whose stored value is not a JSON object with their id.
    public var unreadableEntities = 0
    public var negativeStock = 0
    /// Order creates and changes refused 409 "out of stock": the run tried to oversell (the
    /// judge requires one, else the stock checks prove nothing).
    public var outOfStockRefusals = 0
    /// When (seconds into the load) each command refused "Redis is out of memory" was answered:
    /// the judge requires some within each `redis-full` fault, else that fault refused nothing.
    public var memoryRefusals: [Double] = []
    /// Stock reservations of order changes still open after the drain.
    public var openReservations = 0
    /// Order changes a reaper aborted (their process died or stalled between the steps).
    public var abortedOrderChanges = 0
    public var stockMismatches = 0
    public var examples: [String] = []
    public var violations: [String] = []
}

/// The checker, run after the drain on a ``History``. It trusts nothing the system says about
/// itself: the history is the streams, `mail:sent`, the runtime's ledger, the groups and the dead
/// letters as read from Redis, and the read models as served, compared with the commands the
/// clients sent. A pure function, tested on synthetic histories.
public enum Checker {
    public static func check(_ h: History) -> CheckResult {
        var r = CheckResult()
        for rec in h.records { r.commands[rec.outcome.rawValue, default: 0] += 1 }
        r.memoryRefusals = h.records.filter { $0.error?.contains(History.outOfMemory) == true }.map(\.finished)
        r.commands["total"] = h.records.count
        r.rarelyAnswered = Dictionary(grouping: h.records) { "\($0.type) \($0.action)" }
            .compactMap { kind, records -> String? in
                let ok = records.count { $0.outcome == .ok }
                return records.count >= 20 && ok * 20 < records.count ? "\(kind): \(ok) of \(records.count)" : nil
            }
            .sorted()
        let entries = h.entries

        func isInjected(_ e: StreamEntry) -> Bool { e[History.injectionField] != nil }
        // The same event again: a publisher's retry, or a dead letter an operator replayed (the
        // runtime keeps its `event_id` and adds `replayed_from`): not a command's second event.
        func isRepeat(_ e: StreamEntry) -> Bool { e[History.duplicateField] != nil || e[History.replayedField] != nil }
        // The harness's own update of an id never created: an event of no command.
        func isUncreated(_ e: StreamEntry) -> Bool { e[History.uncreatedField] != nil }
        r.injected = entries.values.reduce(0) { $0 + $1.filter(isInjected).count }
        r.publisherDuplicates = entries.values.reduce(0) { $0 + $1.filter { $0[History.duplicateField] != nil }.count }
        r.replayedEntries = entries.values.reduce(0) { $0 + $1.filter { !isInjected($0) && $0[History.replayedField] != nil }.count }
        r.events = entries.values.reduce(0) { $0 + $1.filter { !isInjected($0) && !isRepeat($0) && !isUncreated($0) }.count }
        r.deliverable = WorkerStreams.subscriptions(in: h.layout).reduce(0) { $0 + (entries[$1.stream]?.count ?? 0) }

        // 1. Commands against events, by trace id. A publisher's retry is the same event again,
        // not a command's second event: it is left out here and must be applied once below.
        // By logical stream: a command's event is in its entity's partition (``ShopLayout``),
        // which each entry's stream must be.
        var byTrace: [String: [(stream: String, entityID: String)]] = [:]
        for (stream, list) in entries {
            let logical = WorkerStreams.logical(stream)
            if let (type, action) = WorkerStreams.typeAndAction(of: logical), h.layout.partitions(of: type) > 1 {
                for e in list where !isInjected(e) {
                    guard let id = e.string("entity_id"), h.layout.partition(type, id: id).stream(action) != stream else { continue }
                    r.misplaced += 1
                    note(&r, "misplaced: \(type) \(id)'s event \(e.id) in \(stream), not its partition's \(h.layout.partition(type, id: id).stream(action))")
                }
            }
            for e in list where !isInjected(e) && !isRepeat(e) && !isUncreated(e) {
                byTrace[e.string("trace_id") ?? "", default: []].append((logical, e.string("entity_id") ?? ""))
            }
        }
        let traces = Set(h.records.map(\.trace))
        for (trace, list) in byTrace where !traces.contains(trace) {
            r.unexpectedEvents += list.count
            note(&r, "event with unknown trace '\(trace)' in \(list[0].stream)")
        }
        var keyedSeen: Set<String> = []
        for rec in h.records {
            let stream = "events:{\(rec.type)}_\(rec.action)"
            let own = (byTrace[rec.trace] ?? []).filter { $0.stream == stream }
            if rec.error == History.droppedAnswer { r.droppedAnswers += 1 }
            if let items = rec.keyedItems {
                if keyedSeen.insert(rec.trace).inserted {
                    r.keyedCreates += 1
                    let made = Set(own.map(\.entityID)).count
                    if made > items {
                        r.keyedCreatesMadeTwice += made - items
                        note(&r, "create of \(items) \(rec.type)(s) made \(made) despite its Idempotency-Key (trace \(rec.trace))")
                    }
                } else {
                    r.keyedRetries += 1
                }
            }
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
                if rec.type == EntityType.order.rawValue, rec.status == 409, rec.error?.contains(History.outOfStock) == true { r.outOfStockRefusals += 1 }
                if applied {
                    r.refusedButApplied += 1
                    note(&r, "\(rec.action) \(rec.type) answered \(rec.status ?? 0) but its event is in \(stream) (trace \(rec.trace))")
                }
            case .unknown:
                if applied { r.recovered += 1 } else { r.unknownNotApplied += 1 }
                // Only the replicas' refusal to confirm: a 503 whose answer was lost or late
                // ("may have been applied" too) is an unknown outcome like any other.
                if let error = rec.error, error.contains(History.unconfirmedOutcome), error.contains(History.unconfirmedByReplicas) {
                    r.unconfirmed += 1
                    if !applied {
                        r.unconfirmedLost += 1
                        if r.unconfirmedLostTraces.count < 50 { r.unconfirmedLostTraces.append("\(rec.action) \(rec.type) (trace \(rec.trace))") }
                    }
                }
            }
        }

        // 2. The runtime's own effects: every (event, group) applied exactly once by the settle.
        var expected: Set<String> = []
        let mailContent = ImpliedMails(entries, records: h.records, layout: h.layout)
        var implied: [String: ImpliedMails.Implied] = [:]
        for sub in WorkerStreams.subscriptions(in: h.layout) {
            var events: Set<String> = []
            for e in entries[sub.stream] ?? [] where !isInjected(e) {
                let event = e.string("event_id") ?? "\(sub.stream)/\(e.id)"
                events.insert(event)
                let key = "\(sub.group):\(event)"
                expected.insert(key)
                if implied[key] == nil { implied[key] = mailContent.implied(by: e, in: sub.stream, for: sub.group) }
            }
            r.expectedApplications += events.count
            let key = History.key(sub.stream, sub.group)
            let applied = h.applied[key] ?? [:]
            for event in events {
                let n = applied[event] ?? 0
                if n == 0 {
                    r.runtimeNeverApplied += 1
                    note(&r, "the runtime never applied \(sub.stream) event \(event) for \(sub.group)")
                } else if n > 1 {
                    r.runtimeAppliedTwice += n - 1
                    note(&r, "the runtime applied \(sub.stream) event \(event) \(n) times for \(sub.group)")
                }
            }
            for (event, n) in applied {
                r.runtimeApplied += n
                if !events.contains(event) {
                    r.runtimeAppliedUnexpected += n
                    note(&r, "the runtime applied \(event) for \(sub.group), which no entry of \(sub.stream) carries")
                }
            }
            r.msgAskedTwice += (h.msgRepeats[key] ?? [:]).values.reduce(0, +)
        }

        // 3. The external effect (msg's second line): one mail per key the events imply.
        r.expectedMails = expected.count
        r.mails = h.mails.count
        var perKey: [String: Int] = [:]
        for m in h.mails {
            perKey[m.key, default: 0] += 1
            r.mailsByKind[m.kind ?? "other", default: 0] += 1
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
        r.excessMails = max(0, h.mails.count - expected.count)
        for m in h.mails {
            guard let want = implied[m.key], let why = ImpliedMails.mismatch(m, want) else { continue }
            r.wrongMails += 1
            note(&r, why)
        }

        // 4. Groups drained; dead letters are exactly the injections, by their marker: each in
        // the dead letters of every group reading its stream, once (a `dlq replay` for one group
        // re-adds the entry under a new id with the same marker; no other group may see it again).
        r.groups = h.groups
        var injectedMarkers: [String: Set<String>] = [:]
        for (stream, list) in entries {
            for e in list { if let m = e.string(History.injectionField) { injectedMarkers[stream, default: []].insert(m) } }
        }
        for sub in WorkerStreams.subscriptions(in: h.layout) {
            let letters = h.deadLetters[History.key(sub.stream, sub.group)] ?? []
            r.deadLetters += letters.count
            var perMarker: [String: Int] = [:]
            for l in letters {
                guard let m = l.marker else { continue }
                perMarker[m, default: 0] += 1
                if l.replayedFrom != nil { r.replayedLetters.insert("\(sub.stream) \(sub.group) \(m)") }
            }
            let want = injectedMarkers[sub.stream] ?? []
            for m in want where perMarker[m] == nil {
                r.deadLettersMissing += 1
                note(&r, "injected malformed \(sub.stream) (\(m)) is not in the dead letters of \(sub.group)")
            }
            for (m, n) in perMarker where want.contains(m) && n > 1 {
                r.deadLettersTwice += n - 1
                note(&r, "injected malformed \(sub.stream) (\(m)) dead-lettered \(n) times by \(sub.group): a replay for another group reached it")
            }
            for letter in letters where letter.marker.map({ !want.contains($0) }) ?? true {
                r.deadLettersUnexpected += 1
                note(&r, "dead letter \(sub.stream) \(letter.originalID) (\(sub.group)) was not injected: \(letter.reason) \(letter.error.prefix(120))")
            }
        }
        r.historyGaps = h.incomplete.values.reduce(0, +)
        for (stream, n) in h.incomplete { note(&r, "\(n) entries of \(stream) were removed before the harness copied them") }

        // 5. Read models equal a fresh replay of the streams.
        for type in EntityType.allCases {
            let fromStreams = h.replayed[type] ?? [:]
            let served = h.served[type] ?? [:]
            var mismatches = 0
            for id in Set(fromStreams.keys).union(served.keys) where fromStreams[id] != served[id] {
                mismatches += 1
                note(&r, "read model \(type) \(id): served \(served[id].map { "\($0)" } ?? "nothing"), replay says \(fromStreams[id].map { "\($0)" } ?? "nothing")")
            }
            r.readModelMismatches[type.rawValue] = mismatches
            for (id, value) in (h.unreadableEntities[type] ?? [:]).sorted(by: { $0.key < $1.key }) {
                r.unreadableEntities += 1
                note(&r, "read model \(type) \(id) holds what is not its JSON: \(value)")
            }
        }

        // 6. Stock: never negative, and equal to the initial stock minus the units of live orders
        // (the load never updates or deletes stock records, so nothing else moves it).
        var initial: [String: (inventory: String, amount: Int)] = [:]
        for e in entries.entries(of: .inventory, .created, in: h.layout) {
            if let o = try? JSONCoding.decode(JSONValue.self, from: e["entity"] ?? []), let pid = o["product_id"]?.stringValue,
                let id = o["id"]?.stringValue, let amount = o["amount"]?.numberValue
            {
                initial[pid] = (id, Int(amount))
            }
        }
        for action in EventAction.allCases {
            for e in entries.entries(of: .inventory, action, in: h.layout) {
                if let o = try? JSONCoding.decode(JSONValue.self, from: e["entity"] ?? []), let amount = o["amount"]?.numberValue, amount < 0 {
                    r.negativeStock += 1
                    note(&r, "stock went negative: \(e.string("entity_id") ?? "?") amount \(amount) in entry \(e.id)")
                }
            }
        }
        var reserved: [String: Int] = [:]
        for (_, order) in h.replayed[.order] ?? [:] {
            for pid in order["product_ids"]?.arrayValue?.compactMap(\.stringValue) ?? [] { reserved[pid, default: 0] += 1 }
        }
        for (pid, inv) in initial {
            let want = inv.amount - reserved[pid, default: 0]
            let have = (h.replayed[.inventory]?[inv.inventory]?["amount"]?.numberValue).map { Int($0) }
            if have != want {
                r.stockMismatches += 1
                note(&r, "stock of product \(pid): \(have.map(String.init) ?? "none"), the orders imply \(want)")
            }
        }

        // The violations.
        func must(_ n: Int, _ what: String) { if n > 0 { r.violations.append("\(what) = \(n)") } }
        must(r.lostEvents, "lost events (commands answered 200 without their event)")
        must(r.duplicateEvents, "duplicate events")
        must(r.unexpectedEvents, "unexpected events")
        r.misplaced += h.misplacedKeys.count
        for key in h.misplacedKeys.prefix(20) { note(&r, "misplaced: \(key)") }
        must(r.misplaced, "entries outside their entity's partition")
        must(r.refusedButApplied, "refused commands that took effect")
        must(r.keyedCreatesMadeTwice, "keyed create made twice (entities beyond their bodies', retried with the same Idempotency-Key)")
        must(r.runtimeAppliedTwice, "runtime applied an event twice (settle effects committed more than once per event and group)")
        must(r.runtimeNeverApplied, "runtime never applied an event (no settle committed its effects)")
        must(r.runtimeAppliedUnexpected, "runtime applied events no entry carries")
        must(r.lostEffects, "lost effects (mails the events imply but never sent)")
        must(r.duplicateEffects, "duplicate effects (mails sent more than once)")
        must(r.unexpectedMails, "unexpected mails (no event implies them)")
        must(r.excessMails, "mails beyond what the events imply (duplicate effects under any key)")
        must(r.wrongMails, "mails not the ones their events imply (another kind, or an address the customer never had)")
        let pending = r.groups.reduce(0) { $0 + $1.pending }
        let lag = r.groups.reduce(0) { $0 + ($1.lag ?? 1) }
        must(pending, "pending entries after the drain")
        must(lag, "lag after the drain")
        must(r.deadLettersMissing, "injected malformed events not dead-lettered")
        must(r.deadLettersUnexpected, "dead letters that were not injected")
        must(r.deadLettersTwice, "injected entries dead-lettered twice by one group (a dlq replay for another group reached it)")
        must(r.readModelMismatches.values.reduce(0, +), "read-model entities that differ from a replay of the streams")
        must(r.unreadableEntities, "read-model entities that are not their id's JSON (a malformed entry folded in)")
        r.openReservations = h.openReservations
        r.abortedOrderChanges = h.abortedOrderChanges
        must(r.openReservations, "stock reservations left open after the drain (order changes never decided)")
        must(r.negativeStock, "negative stock")
        must(r.stockMismatches, "stock that differs from what the orders imply")
        return r
    }

    private static func note(_ r: inout CheckResult, _ text: String) {
        if r.examples.count < 40 { r.examples.append(text) }
    }
}
