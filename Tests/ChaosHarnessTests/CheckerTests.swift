import OrderShop
import RedisClient
import StreamWorker
import Testing

@testable import ChaosHarness

/// A small shop's history after a clean run: two customers created (one also deleted), one order
/// created and billed, one order refused for lack of stock. Every other command answered 200,
/// every event applied once by the runtime and
/// mailed once by msg (the mail its event implies, to its customer), every group drained, the
/// read models equal to the replay.
///
/// In a layout of several partitions (``ShopLayout``), each event is in its entity's partition
/// stream, a subscription of its own.
struct ShopHistory {
    var h = History()
    let layout: ShopLayout
    private var sequence = 0
    /// Addresses of customers and customers of orders, for the mails' recipients.
    private var emails: [String: String] = [:]
    private var customers: [String: String] = [:]

    init(layout: ShopLayout = .single) {
        self.layout = layout
        h.partitions = layout.partitions
        h.groups = WorkerStreams.subscriptions(in: layout).map { History.Group(stream: $0.stream, group: $0.group, pending: 0, lag: 0) }
        event(.customer, .created, entity: "c1", trace: "t1", fields: ["email": "c1@shop.test"])
        event(.customer, .created, entity: "c2", trace: "t2", fields: ["email": "c2@shop.test"])
        event(.customer, .deleted, entity: "c2", trace: "t3", fields: ["email": "c2@shop.test"])
        event(.order, .created, entity: "o1", trace: "t4", fields: ["customer_id": "c1"])
        event(.billing, .created, entity: "b1", trace: "t5", fields: ["order_id": "o1"])
        h.records.append(Self.refusedOrder(trace: "t6", status: 409, error: Self.outOfStockAnswer))
        h.served[.customer] = ["c1": .object(["id": .string("c1")])]
        h.replayed[.customer] = h.served[.customer]
    }

    /// The kind of mail a group sends for an event of a stream.
    static func kind(_ stream: String, _ group: String) -> MailKind {
        switch (WorkerStreams.logical(stream), group) {
        case (EntityType.customer.stream(.created), _): .welcome
        case (EntityType.customer.stream(.deleted), _): .goodbye
        case (EntityType.order.stream(.created), "crm"): .thankYou
        case (EntityType.order.stream(.created), _): .pleasePay
        default: .paymentReceived
        }
    }

    /// Appends an event, its command (answered 200), and the runtime's and msg's effects for
    /// every group reading its stream: the mail of the kind the event implies, to its customer.
    mutating func event(_ type: EntityType, _ action: EventAction, entity: String, trace: String, fields: [String: String] = [:]) {
        let stream = layout.partition(type, id: entity).stream(action)
        let eventID = "e-\(trace)"
        sequence += 1
        let json = (["\"id\":\"\(entity)\""] + fields.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\"\($0.value)\"" }).joined(separator: ",")
        h.entries[stream, default: []].append(
            StreamEntry(id: "\(sequence)-0", fields: [
                StreamField("event_id", eventID), StreamField("entity_id", entity), StreamField("trace_id", trace),
                StreamField("entity", "{\(json)}"),
            ]))
        h.records.append(
            CommandRecord(trace: trace, action: action.rawValue, type: type.rawValue, ids: [entity], status: 200, outcome: .ok, error: nil, started: 0, finished: 0))
        if let email = fields["email"] { emails[entity] = email }
        if let customer = fields["customer_id"] { customers[entity] = customer }
        let to: String? =
            switch type {
            case .customer: fields["email"]
            case .order: fields["customer_id"].flatMap { emails[$0] }
            default: fields["order_id"].flatMap { customers[$0] }.flatMap { emails[$0] }
            }
        for group in WorkerStreams.groups(of: stream) {
            h.applied[History.key(stream, group), default: [:]][eventID, default: 0] += 1
            h.mails.append(History.Mail(key: "\(group):\(eventID)", kind: Self.kind(stream, group).rawValue, to: to))
        }
    }

    /// The order service's answer to an order for more units than there are.
    static let outOfStockAnswer = #"{"error":"out of stock: product p1 has 0 units, the order needs 1","field":"product_ids"}"#

    /// A create of an order refused with `status` (no event).
    static func refusedOrder(trace: String, status: Int, error: String) -> CommandRecord {
        CommandRecord(trace: trace, action: "created", type: "order", ids: [], status: status, outcome: .failed, error: error, started: 0, finished: 0)
    }

    /// c1's customer_created stream.
    var stream: String { layout.partition(.customer, id: "c1").stream(.created) }

    /// Appends the first customer_created entry again under a new id, marked with `field`
    /// (a publisher's retry, or a replayed dead letter).
    mutating func repeatFirst(as id: String, marking field: String) {
        var copy = h.entries[stream]![0]
        copy.id = id
        copy.fields.append(StreamField(field, h.entries[stream]![0].id))
        h.entries[stream]!.append(copy)
    }
}

@Suite("Checker on synthetic histories")
struct CheckerTests {
    @Test("a clean history has no violation (also with customers and billings in 4 partitions)", arguments: [1, 4])
    func clean(partitions: Int) {
        let r = Checker.check(ShopHistory(layout: ShopLayout(partitions: partitions)).h)
        #expect(r.violations == [])
        #expect(r.events == 5)
        #expect(r.expectedApplications == 6)
        #expect(r.runtimeApplied == 6)
        #expect(r.expectedMails == 6)
        #expect(r.outOfStockRefusals == 1)
    }

    @Test("orders refused 409 out of stock are counted (no other refusal is), and when commands refused for memory were answered")
    func refusals() {
        var s = ShopHistory()
        s.h.records += [
            ShopHistory.refusedOrder(trace: "t7", status: 409, error: ShopHistory.outOfStockAnswer),
            ShopHistory.refusedOrder(trace: "t8", status: 409, error: #"{"error":"order o1 changed concurrently while this change was made; send it again"}"#),
            ShopHistory.refusedOrder(trace: "t9", status: 400, error: #"{"error":"no product with id p9 (never created, or deleted)"}"#),
            CommandRecord(
                trace: "t10", action: "created", type: "billing", ids: [], status: 409, outcome: .failed, error: #"{"error":"out of stock"}"#, started: 0,
                finished: 0),
        ]
        #expect(Checker.check(s.h).outOfStockRefusals == 2)
        s.h.records.append(
            CommandRecord(
                trace: "t11", action: "created", type: "customer", ids: [], status: 503, outcome: .unknown,
                error: #"{"error":"event store unavailable: Redis is out of memory (its maxmemory is reached); the command did not run"}"#, started: 3,
                finished: 3.5))
        #expect(Checker.check(s.h).memoryRefusals == [3.5])
        #expect(Checker.check(ShopHistory().h).violations == [])
    }

    @Test("a command answered 200 without its event is a lost event")
    func lostEvent() {
        var s = ShopHistory()
        s.h.records.append(
            CommandRecord(trace: "t9", action: "created", type: "customer", ids: ["c9"], status: 200, outcome: .ok, error: nil, started: 0, finished: 0))
        let r = Checker.check(s.h)
        #expect(r.lostEvents == 1)
        #expect(r.violations.contains { $0.hasPrefix("lost events") })
    }

    @Test("a keyed create retried after a dropped answer: one entity is fine, a second one under its trace is 'made twice'")
    func keyedCreateRetried() {
        func retried(makingAgain: Bool) -> CheckResult {
            var s = ShopHistory()
            // The create of c1 (trace t1) was keyed: its first answer dropped, its retry replayed.
            s.h.records[0].keyedItems = 1
            var dropped = s.h.records[0]
            dropped.outcome = .unknown
            dropped.error = History.droppedAnswer
            s.h.records.insert(dropped, at: 0)
            if makingAgain { s.event(.customer, .created, entity: "c1-again", trace: "t1") }
            return Checker.check(s.h)
        }
        let replayed = retried(makingAgain: false)
        #expect(replayed.violations == [])
        #expect(replayed.keyedCreates == 1 && replayed.keyedRetries == 1 && replayed.droppedAnswers == 1)
        let madeTwice = retried(makingAgain: true)
        #expect(madeTwice.keyedCreatesMadeTwice == 1)
        #expect(madeTwice.violations.contains { $0.hasPrefix("keyed create made twice") }, "\(madeTwice.violations)")
    }

    @Test("an event the runtime never applied, and its missing mail, are violations (also in 4 partitions)", arguments: [1, 4])
    func lostEffect(partitions: Int) {
        var s = ShopHistory(layout: ShopLayout(partitions: partitions))
        #expect(partitions == 1 || PartitionedStream.parse(s.stream) != nil)
        let key = History.key(s.stream, "crm")
        s.h.applied[key]?["e-t1"] = nil
        s.h.mails.removeAll { $0.key == "crm:e-t1" }
        let r = Checker.check(s.h)
        #expect(r.runtimeNeverApplied == 1)
        #expect(r.lostEffects == 1)
        #expect(r.violations.contains { $0.hasPrefix("runtime never applied") })
        #expect(r.violations.contains { $0.hasPrefix("lost effects") })
    }

    /// Every query of one entity reads its id's partition alone: an entity stored elsewhere is
    /// listed and mailed, yet not found. Its events and the lists agree, so only where it is shows it.
    @Test("in a shop of partitions, an event outside its entity's partition, or a one-partition key, is a violation")
    func misplaced() {
        var s = ShopHistory(layout: ShopLayout(partitions: 4))
        #expect(Checker.check(s.h).misplaced == 0)
        let own = s.stream
        let other = ShopLayout(partitions: 4).partitions(.customer).map { $0.stream(.created) }.first { $0 != own }!
        let c1 = (s.h.entries[own] ?? []).filter { $0.string("entity_id") == "c1" }
        s.h.entries[other, default: []] += c1
        s.h.entries[own]?.removeAll { $0.string("entity_id") == "c1" }
        let r = Checker.check(s.h)
        #expect(r.misplaced == 1)
        #expect(r.violations.contains { $0.hasPrefix("entries outside their entity's partition") })
        var t = ShopHistory(layout: ShopLayout(partitions: 4))
        t.h.misplacedKeys = ["events:{customer}_created exists"]
        #expect(Checker.check(t.h).violations.contains { $0.hasPrefix("entries outside their entity's partition = 1") })
    }

    @Test("an event the runtime applied twice is a violation even when msg sent one mail (also in 4 partitions)", arguments: [1, 4])
    func doubledByRuntime(partitions: Int) {
        var s = ShopHistory(layout: ShopLayout(partitions: partitions))
        s.h.applied[History.key(s.stream, "crm")]?["e-t1"] = 2
        let r = Checker.check(s.h)
        #expect(r.runtimeAppliedTwice == 1)
        #expect(r.duplicateEffects == 0)
        #expect(r.violations.contains { $0.hasPrefix("runtime applied an event twice") })
    }

    @Test("msg asked twice under one key is shown, not a violation")
    func msgAskedTwice() {
        var s = ShopHistory()
        s.h.msgRepeats[History.key(s.stream, "crm")] = ["e-t1": 1]
        let r = Checker.check(s.h)
        #expect(r.msgAskedTwice == 1)
        #expect(r.violations == [])
    }

    @Test("two mails under one key are a duplicate effect")
    func doubledMail() {
        var s = ShopHistory()
        s.h.mails.append(History.Mail(key: "crm:e-t1", kind: "welcome"))
        let r = Checker.check(s.h)
        #expect(r.duplicateEffects == 1)
        #expect(r.excessMails == 1)
        #expect(r.violations.contains { $0.hasPrefix("duplicate effects") })
    }

    @Test("a mail of another kind than its event implies, or to an address its customer never had, is a violation")
    func wrongMail() {
        func check(_ change: (inout History.Mail) -> Void, key: String) -> CheckResult {
            var s = ShopHistory()
            let i = s.h.mails.firstIndex { $0.key == key }!
            change(&s.h.mails[i])
            return Checker.check(s.h)
        }
        // A good-bye for a new customer.
        let kind = check({ $0.kind = MailKind.goodbye.rawValue }, key: "crm:e-t1")
        #expect(kind.wrongMails == 1)
        #expect(kind.violations.contains { $0.hasPrefix("mails not the ones their events imply") }, "\(kind.violations)")
        // The order's thank-you to the other customer.
        let order = check({ $0.to = "c2@shop.test" }, key: "crm:e-t4")
        #expect(order.wrongMails == 1)
        #expect(order.examples.contains { $0.contains("went to c2@shop.test") }, "\(order.examples)")
        // The payment's mail to someone else.
        #expect(check({ $0.to = "x@shop.test" }, key: "billing:e-t5").wrongMails == 1)
        // A welcome to an address other than the event's.
        #expect(check({ $0.to = "c1@shop.test" }, key: "crm:e-t2").wrongMails == 1)
    }

    @Test("an order's mail may go to an address its customer had before or after the order: the worker reads it when it handles the event")
    func customersOtherAddress() {
        var s = ShopHistory()
        s.event(.customer, .updated, entity: "c1", trace: "t6", fields: ["email": "c1-new@shop.test"])
        let i = s.h.mails.firstIndex { $0.key == "billing:e-t4" }!
        s.h.mails[i].to = "c1-new@shop.test"
        let r = Checker.check(s.h)
        #expect(r.wrongMails == 0)
        #expect(r.violations == [], "\(r.violations)")
    }

    @Test("an order's mail may go to the address of a customer update a failover lost after a worker read it (answered 503, no event)")
    func addressOfALostUpdate() {
        var s = ShopHistory()
        var update = CommandRecord(
            trace: "t7", action: "updated", type: "customer", ids: ["c1"], status: 503, outcome: .unknown,
            error: "may have been applied", started: 0, finished: 0)
        update.email = "c1-lost@shop.test"
        s.h.records.append(update)
        let i = s.h.mails.firstIndex { $0.key == "crm:e-t4" }!
        s.h.mails[i].to = "c1-lost@shop.test"
        #expect(Checker.check(s.h).wrongMails == 0)
        // Not one a refused update asked for (it changed nothing).
        s.h.records[s.h.records.count - 1].outcome = .failed
        #expect(Checker.check(s.h).wrongMails == 1)
        // Not an address another customer's update asked for.
        s.h.records[s.h.records.count - 1].outcome = .unknown
        s.h.records[s.h.records.count - 1].ids = ["c2"]
        #expect(Checker.check(s.h).wrongMails == 1)
    }

    @Test("a publisher's retry is the same event: applied once it passes, applied twice it fails")
    func publisherDuplicate() {
        var s = ShopHistory()
        s.repeatFirst(as: "99-0", marking: History.duplicateField)
        var r = Checker.check(s.h)
        #expect(r.publisherDuplicates == 1)
        #expect(r.duplicateEvents == 0)
        #expect(r.violations == [])
        s.h.applied[History.key(s.stream, "crm")]?["e-t1"] = 2
        r = Checker.check(s.h)
        #expect(r.violations.contains { $0.hasPrefix("runtime applied an event twice") })
    }

    @Test("a dead letter an operator replayed is the same event again, not a command's second one")
    func replayedDeadLetter() {
        var s = ShopHistory()
        s.repeatFirst(as: "98-0", marking: History.replayedField)
        let r = Checker.check(s.h)
        #expect(r.replayedEntries == 1)
        #expect(r.events == 5)
        #expect(r.violations == [])
    }

    @Test("an event no command asked for, and a mail no event implies, are unexpected")
    func unexpected() {
        var s = ShopHistory()
        s.h.entries[s.stream]!.append(
            StreamEntry(id: "50-0", fields: [StreamField("event_id", "e-x"), StreamField("entity_id", "cx"), StreamField("trace_id", "nobody")]))
        s.h.applied[History.key(s.stream, "crm")]?["e-x"] = 1
        s.h.mails.append(History.Mail(key: "crm:e-x", kind: "welcome"))
        s.h.mails.append(History.Mail(key: "crm:made-up", kind: "welcome"))
        let r = Checker.check(s.h)
        #expect(r.unexpectedEvents == 1)
        #expect(r.unexpectedMails == 1)
        #expect(r.violations.contains { $0.hasPrefix("unexpected events") })
        #expect(r.violations.contains { $0.hasPrefix("unexpected mails") })
    }

    @Test("a read model that differs from the replay, and a group not drained, are violations")
    func readModelAndDrain() {
        var s = ShopHistory()
        s.h.served[.customer]?["c1"] = .object(["id": .string("c1"), "name": .string("changed")])
        s.h.groups[0].pending = 3
        let r = Checker.check(s.h)
        #expect(r.violations.contains { $0.hasPrefix("read-model entities") })
        #expect(r.violations.contains { $0.hasPrefix("pending entries after the drain") })
    }

    @Test("a read-model value that is not its id's JSON (a malformed entry folded in by a rebuild) is a violation")
    func unreadableEntity() {
        var s = ShopHistory()
        #expect(Checker.check(s.h).unreadableEntities == 0)
        s.h.unreadableEntities[.customer] = ["intruder": "{\"id\": \"broken"]
        let r = Checker.check(s.h)
        #expect(r.unreadableEntities == 1)
        #expect(r.violations.contains { $0.hasPrefix("read-model entities that are not their id's JSON") })
        #expect(PlantedBugOption.rebuildFoldsMalformed.expectedViolations.contains { phrase in r.violations.contains { $0.contains(phrase) } })
        #expect(r.examples.contains { $0.contains("intruder") })
    }

    @Test("an injected malformed event must be dead-lettered by every group reading it, and nothing else")
    func deadLetters() {
        var s = ShopHistory()
        s.h.entries[s.stream]!.append(StreamEntry(id: "60-0", fields: [StreamField("event_id", "bad"), StreamField(History.injectionField, "x")]))
        var r = Checker.check(s.h)
        #expect(r.deadLettersMissing == 1)
        s.h.deadLetters[History.key(s.stream, "crm")] = [History.Letter(originalID: "60-0", reason: "malformed", error: "", marker: "x")]
        r = Checker.check(s.h)
        #expect(r.violations == [])
        #expect(r.replayedLetters.isEmpty)
        // Replayed and dead-lettered again: its letter carries `replayed_from` (the judge wants it).
        s.h.deadLetters[History.key(s.stream, "crm")] = [
            History.Letter(originalID: "62-0", reason: "malformed", error: "", marker: "x", replayedFrom: "60-0")
        ]
        r = Checker.check(s.h)
        #expect(r.violations == [])
        #expect(r.replayedLetters == ["\(s.stream) crm x"])
        s.h.deadLetters[History.key(s.stream, "crm")] = [History.Letter(originalID: "60-0", reason: "malformed", error: "", marker: "x")]
        s.h.deadLetters[History.key(s.stream, "crm")]!.append(History.Letter(originalID: "1-0", reason: "malformed", error: ""))
        r = Checker.check(s.h)
        #expect(r.deadLettersUnexpected == 1)
        // A replay for another group re-added it; this group dead-lettered it a second time.
        s.h.deadLetters[History.key(s.stream, "crm")]!.removeLast()
        s.h.deadLetters[History.key(s.stream, "crm")]!.append(History.Letter(originalID: "61-0", reason: "malformed", error: "", marker: "x"))
        r = Checker.check(s.h)
        #expect(r.deadLettersTwice == 1)
        #expect(r.violations.contains { $0.contains("dlq replay") })
    }

    @Test("a stock reservation left open after the drain is a violation")
    func openReservation() {
        var s = ShopHistory()
        s.h.openReservations = 2
        let r = Checker.check(s.h)
        #expect(r.openReservations == 2)
        #expect(r.violations.contains { $0.hasPrefix("stock reservations left open after the drain") && $0.hasSuffix("= 2") })
    }

    @Test("an update answered 503 'not applied' whose event is there is a refused command that took effect")
    func notAppliedButApplied() {
        var s = ShopHistory()
        s.event(.order, .updated, entity: "o1", trace: "t6")
        s.h.records[s.h.records.count - 1].status = 503
        s.h.records[s.h.records.count - 1].outcome = .failed
        let r = Checker.check(s.h)
        #expect(r.refusedButApplied == 1)
        #expect(r.violations.contains { $0.hasPrefix("refused commands that took effect") })
    }

    @Test("a 503 the replicas did not confirm counts as unconfirmed (lost when no event); one whose answer was lost is an unknown outcome only")
    func unconfirmedIsTheReplicasRefusal() {
        var s = ShopHistory()
        func unanswered(_ trace: String, _ error: String) -> CommandRecord {
            CommandRecord(trace: trace, action: "created", type: "customer", ids: [], status: 503, outcome: .unknown, error: error, started: 0, finished: 0)
        }
        s.h.records.append(unanswered("u1", #"{"error":"the command may have been applied: Redis took it, but 0 of the 1 replicas asked for confirmed it in time; retry"#))
        s.h.records.append(unanswered("u2", #"{"error":"event store unavailable (timeout): the command may have been applied, Redis's answer was lost or late"#))
        let r = Checker.check(s.h)
        #expect(r.unconfirmed == 1)
        #expect(r.unconfirmedLost == 1)
        #expect(r.unknownNotApplied == 2)
        #expect(r.violations.isEmpty, "\(r.violations)")
    }
}
