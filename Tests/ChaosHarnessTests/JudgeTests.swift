import Testing

@testable import ChaosHarness

/// A run's report that passes: enough load, every enabled fault carried out, a kill inside a
/// handler, redeliveries, duplicates suppressed, stale settles refused, every exit asked for.
func passingReport() -> RunReport {
    var o = ChaosOptions()
    o.duration = 1
    o.faults = [.kill, .pause, .duplicate]
    var check = Checker.check(ShopHistory().h)
    check.commands["total"] = 100
    check.events = 100
    check.msgAskedTwice = 3
    let kill = PlannedFault(at: 1, kind: .kill, worker: "crm", slot: 0, seconds: 1)
    let pause = PlannedFault(at: 2, kind: .pause, worker: "billing", slot: 1, seconds: 1)
    let dup = PlannedFault(at: 3, kind: .duplicate, seconds: 0, variant: 2, stream: "events:{order}_created")
    return RunReport(
        options: o, schedule: [kill, pause, dup],
        faults: [
            ExecutedFault(planned: kill, at: 1, target: "crm-0-i1", heldPending: 40, inHandler: 3),
            ExecutedFault(planned: pause, at: 2, target: "billing-1-i1", heldPending: 12, takenAtResume: 12),
            ExecutedFault(planned: dup, at: 3, target: "events:{order}_created 1-0"),
        ],
        check: check,
        counters: ["delivered": check.deliverable + 50, "duplicates": 4, "foreign_settles_refused": 7],
        reclaims: [
            ReclaimWatch(consumer: "crm-0-i1", group: "crm", since: 1, held: 40, reclaimedAfter: 3.1),
            ReclaimWatch(consumer: "billing-1-i1", group: "billing", since: 2, held: 12, reclaimedAfter: 3.2),
        ],
        drained: true)
}

@Suite("The verdict of a run")
struct JudgeTests {
    @Test("a run that exercised everything and broke nothing passes")
    func pass() {
        let outcome = Judge.judge(passingReport())
        #expect(outcome.violations == [])
        #expect(outcome.voids == [])
        #expect(outcome.verdict == "PASS")
    }

    @Test("a run with kills in which no worker asked msg again for a mail it handed over is void; msg sending it again is that too")
    func msgNeverAskedAgain() {
        var r = passingReport()
        r.check?.msgAskedTwice = 0
        var outcome = Judge.judge(r)
        #expect(outcome.verdict == "VOID")
        #expect(outcome.voids.contains { $0.contains("no worker asked msg again for a mail it had handed over") })

        // msg-forgets-keys: msg answers "sent" again, so the ledger counts no repeat; the
        // second mail is the repeat, and a violation.
        r.check?.duplicateEffects = 2
        r.check?.violations = ["duplicate effects (mails sent more than once) = 2"]
        outcome = Judge.judge(r)
        #expect(!outcome.voids.contains { $0.contains("asked msg again") })
        #expect(outcome.verdict == "FAIL")

        // Without kills nothing is asked twice on purpose: no such rule.
        r = passingReport()
        r.check?.msgAskedTwice = 0
        r.options.faults.remove(.kill)
        r.faults.removeAll { $0.planned.kind == .kill }
        #expect(!Judge.judge(r).voids.contains { $0.contains("asked msg again") })
    }

    @Test("a run in which no order was refused for lack of stock is void: overselling was never tried")
    func noOutOfStock() {
        var r = passingReport()
        r.check?.outOfStockRefusals = 0
        let outcome = Judge.judge(r)
        #expect(outcome.verdict == "VOID")
        #expect(outcome.voids.contains { $0.contains("refused for lack of stock") }, "\(outcome.voids)")
    }

    @Test("a redis-full fault during which no command was refused for memory makes the run void")
    func redisFullRefusedNothing() {
        var r = passingReport()
        r.options.faults.insert(.redisFull)
        let full = PlannedFault(at: 5, kind: .redisFull, seconds: 2)
        r.faults.append(ExecutedFault(planned: full, at: 5.2, note: "maxmemory below use on :6379 for 2.0 s"))
        r.check?.memoryRefusals = [4.9, 8.5]
        var outcome = Judge.judge(r)
        #expect(outcome.verdict == "VOID")
        #expect(outcome.voids.contains { $0.contains("the redis-full fault at 5.2 s refused no write") }, "\(outcome.voids)")
        r.check?.memoryRefusals = [4.9, 7.9]
        outcome = Judge.judge(r)
        #expect(outcome.verdict == "PASS", "\(outcome.voids)")
    }

    @Test("a run whose trims removed nothing, or met nothing the groups still needed, is void")
    func trimThatCouldLoseNothing() {
        var r = passingReport()
        r.options.faults.insert(.trim)
        var trim = ExecutedFault(planned: PlannedFault(at: 4, kind: .trim, seconds: 0), at: 4.1)
        trim.trimmed = 120
        trim.neededAtTrim = 0
        r.faults.append(trim)
        var outcome = Judge.judge(r)
        #expect(outcome.verdict == "VOID")
        #expect(outcome.voids.contains { $0.contains("no trim removed entries while the groups still needed some (1 trims)") }, "\(outcome.voids)")
        r.faults[r.faults.count - 1].neededAtTrim = 7
        r.faults[r.faults.count - 1].trimmed = 0
        #expect(Judge.judge(r).verdict == "VOID")
        r.faults[r.faults.count - 1].trimmed = 120
        outcome = Judge.judge(r)
        #expect(outcome.verdict == "PASS", "\(outcome.voids)")
    }

    @Test("a trim's removed entries are its table's REMOVED column over the event streams, whatever stderr mixed in")
    func trimOutputIsRead() {
        let output = """
            warning: customer: 3 malformed entries left out of the snapshot (gone once their stream is trimmed): a; b
            STREAM                        GROUPS  REMOVED  KEPT FROM        NOTE
            events:{customer}_created     1       410      1700000000000-3  snapshot covers 1700000000000-9
            warning: events:{order}_created: --maxlen 5 refused: it would drop entries
            events:{order}_created        2       0        1700000000001-0  snapshot covers 1700000000002-0
            replay:events:{order}_created:billing  1  12  1700000000001-5  a group's replay stream: what it has acknowledged
            """
        #expect(FaultInjector.removedEntries(trimOutput: output) == 410)
        #expect(FaultInjector.removedEntries(trimOutput: "could not connect") == 0)
    }

    @Test("a run in which no rebuild's swap was refused for an event appended meanwhile is void")
    func rebuildThatMetNoRace() {
        var r = passingReport()
        r.options.faults.insert(.rebuild)
        var rebuild = ExecutedFault(planned: PlannedFault(at: 6, kind: .rebuild, seconds: 0), at: 6)
        rebuild.swapsRefused = 0
        r.faults.append(rebuild)
        var outcome = Judge.judge(r)
        #expect(outcome.verdict == "VOID")
        #expect(outcome.voids.contains { $0.contains("no rebuild met an event appended between its read and its swap (1 rebuilds)") }, "\(outcome.voids)")
        r.faults[r.faults.count - 1].swapsRefused = 2
        outcome = Judge.judge(r)
        #expect(outcome.verdict == "PASS", "\(outcome.voids)")
    }

    @Test("a rebuild's refused swaps are the sum of its entity types' retries")
    func rebuildOutputIsRead() {
        let output = """
            rebuilt customer: 120 events -> 100 live, 20 deleted, 0 ignored (repeated or late)
            rebuilt inventory: snapshot + 52 events -> 234 live, 0 deleted, 0 ignored (repeated or late), 3 retries
            rebuilt order: 401 events -> 192 live, 72 deleted, 0 ignored (repeated or late), 12 retries, 1 malformed entries left out: x
            """
        #expect(FaultInjector.swapsRefused(rebuildOutput: output) == 15)
        #expect(FaultInjector.swapsRefused(rebuildOutput: "error: could not connect") == 0)
    }

    @Test("a worker that exited on its own fails the run, named")
    func crashed() {
        var r = passingReport()
        r.processExits = ["worker crm-1-i2 exited on its own with status 134"]
        let outcome = Judge.judge(r)
        #expect(outcome.verdict == "FAIL")
        #expect(outcome.violations.contains { $0.contains("crm-1-i2") })
    }

    @Test("a checker violation fails the run even when it is also thin")
    func failBeatsVoid() {
        var r = passingReport()
        r.check?.violations = ["lost events (commands answered 200 without their event) = 1"]
        r.check?.commands["total"] = 1
        #expect(Judge.judge(r).verdict == "FAIL")
    }

    @Test("too few commands or events make the run void")
    func thin() {
        var r = passingReport()
        r.options.duration = 60
        let outcome = Judge.judge(r)
        #expect(outcome.verdict == "VOID")
        #expect(outcome.voids.contains { $0.contains("100 commands") })
        #expect(outcome.voids.contains { $0.contains("100 events") })
    }

    @Test("a fault that could not be carried out makes the run void, and so does an enabled kind never run")
    func skippedFault() {
        var r = passingReport()
        r.faults[2].skipped = true
        r.faults[2].note = "XADD failed"
        let outcome = Judge.judge(r)
        #expect(outcome.verdict == "VOID")
        #expect(outcome.voids.contains { $0.contains("duplicate fault") && $0.contains("XADD failed") })
        #expect(outcome.voids.contains { $0 == "no duplicate fault was carried out" })
    }

    @Test("kills that never hit an entry inside its handler make the run void")
    func noKillInHandler() {
        var r = passingReport()
        r.faults[0].inHandler = 0
        let outcome = Judge.judge(r)
        #expect(outcome.verdict == "VOID")
        #expect(outcome.voids.contains { $0.contains("inside its handler") })
    }

    @Test("no redelivery, or no duplicate suppressed, makes the run void")
    func unexercisedPaths() {
        var r = passingReport()
        r.counters["delivered"] = r.check!.deliverable
        r.counters["duplicates"] = 0
        let outcome = Judge.judge(r)
        #expect(outcome.verdict == "VOID")
        #expect(outcome.voids.contains { $0.contains("delivered twice") })
        #expect(outcome.voids.contains { $0.contains("marker path") })
    }

    @Test("entries reclaimed are redeliveries even when the delivery counter missed a killed worker's last deliveries")
    func reclaimedCountAsRedeliveries() {
        var r = passingReport()
        // A CI replicated run: 71 reclaimed, yet the scraped delivery counter showed none
        // beyond the entries (the killed workers' deliveries after their last scrape are lost).
        r.counters["delivered"] = r.check!.deliverable - 20
        r.counters["reclaimed"] = 71
        let outcome = Judge.judge(r)
        #expect(r.redeliveries == 71)
        #expect(!outcome.voids.contains { $0.contains("delivered twice") }, "\(outcome.voids)")
    }

    @Test("zombies whose reclaimed entries were never refused a settle fail the owner check")
    func ownerCheck() {
        var r = passingReport()
        r.counters["foreign_settles_refused"] = 0
        let outcome = Judge.judge(r)
        #expect(outcome.verdict == "FAIL")
        #expect(outcome.violations.contains { $0.hasPrefix("owner check") })
    }

    @Test("a kind of command almost never answered 200 makes the run void: nothing of it was there to lose")
    func commandsRarelyAnswered() {
        var h = ShopHistory()
        for i in 0..<40 {
            h.h.records.append(CommandRecord(
                trace: "p\(i)", action: "deleted", type: "product", ids: ["p\(i)"], status: i == 0 ? 200 : 503, outcome: i == 0 ? .ok : .unknown,
                error: nil, started: 0, finished: 0))
        }
        var r = passingReport()
        r.check = Checker.check(h.h)
        r.check?.commands["total"] = 100
        r.check?.events = 100
        #expect(r.check?.rarelyAnswered == ["product deleted: 1 of 40"])
        let outcome = Judge.judge(r)
        #expect(outcome.voids.contains("too few commands answered 200: product deleted: 1 of 40"), "\(outcome.voids)")
        #expect(outcome.verdict != "PASS")
    }

    @Test("a replay fault whose injected entry is not in its group's dead letters as replayed fails the run: the replay moved nothing")
    func replayThatMovedNothing() {
        var r = passingReport()
        let replay = PlannedFault(at: 4, kind: .replay, worker: "billing", seconds: 0, stream: "events:{order}_created")
        var done = ExecutedFault(planned: replay, at: 4, target: "events:{order}_created 9-0")
        done.marker = "m1"
        r.faults.append(done)
        var outcome = Judge.judge(r)
        #expect(outcome.violations.contains { $0.hasPrefix("replay: the entry injected into events:{order}_created (m1) is not in billing's") }, "\(outcome.violations)")
        r.check?.replayedLetters = ["events:{order}_created billing m1"]
        outcome = Judge.judge(r)
        #expect(outcome.verdict == "PASS", "\(outcome.violations)")
    }

    @Test("a zombie whose reclaim a failover undid owes no refused settle: the run is void, not failed")
    func reclaimUndoneByFailover() {
        // CI, replicated: the XAUTOCLAIM of a frozen worker's entries was lost when the primary
        // failed over without it; the worker resumed owning them, and its settles were accepted.
        var r = passingReport()
        r.counters["foreign_settles_refused"] = 0
        r.faults[1].takenAtResume = 0
        let outcome = Judge.judge(r)
        #expect(!outcome.violations.contains { $0.hasPrefix("owner check") }, "\(outcome.violations)")
        #expect(outcome.voids.contains { $0.contains("the owner check never ran") })
        #expect(outcome.verdict == "VOID")
    }

    @Test("a stale settle with no worker paused or cut off means a lease was not kept")
    func leaseNotKept() {
        var r = passingReport()
        r.options.faults = [.kill]
        r.faults = [r.faults[0]]
        var outcome = Judge.judge(r)
        #expect(outcome.violations.contains { $0.hasPrefix("lease not kept: 7") })
        r.counters["foreign_settles_refused"] = 0
        outcome = Judge.judge(r)
        #expect(outcome.verdict == "PASS")
    }

    @Test("a cluster fault cuts workers off a shard: stale settles refused then are no lease broken")
    func clusterFaultsCutWorkersOff() {
        for kind in FaultKind.cluster {
            var r = passingReport()
            r.options.topology = .cluster
            r.options.faults = [.kill, kind]
            let fault = PlannedFault(at: 4, kind: kind, seconds: 1, stream: "{order}")
            r.schedule = [r.schedule[0], fault]
            r.faults = [r.faults[0], ExecutedFault(planned: fault, at: 4, target: "{order}")]
            let outcome = Judge.judge(r)
            #expect(outcome.verdict == "PASS", "\(kind): \(outcome.violations) \(outcome.voids)")
        }
    }

    @Test("a run that did not drain fails; entries of a dead worker never reclaimed fail")
    func drainAndReclaim() {
        var r = passingReport()
        r.drained = false
        r.reclaims[0].reclaimedAfter = nil
        let outcome = Judge.judge(r)
        #expect(outcome.verdict == "FAIL")
        #expect(outcome.violations.contains { $0.contains("did not drain") })
        #expect(outcome.violations.contains { $0.contains("never reclaimed") })
    }

    @Test("every planted bug names the violations that must catch it")
    func plantedBugs() {
        for bug in PlantedBugOption.allCases { #expect(!bug.expectedViolations.isEmpty) }
        #expect(PlantedBugOption.noMarkerCheck.expectedViolations.contains("runtime applied an event twice"))
    }

    @Test("order faults that found no change between its steps, or after which no reaper aborted one, make the run void")
    func orderFaultsUnexercised() {
        var r = passingReport()
        r.options.faults.insert(.orderCrash)
        let crash = PlannedFault(at: 4, kind: .orderCrash, seconds: 1)
        r.faults.append(ExecutedFault(planned: crash, at: 4, target: "order", heldPending: 0))
        r.check?.abortedOrderChanges = 0
        var outcome = Judge.judge(r)
        #expect(outcome.verdict == "VOID")
        #expect(outcome.voids.contains { $0.contains("no order-crash found an order change between its steps") })
        #expect(outcome.voids.contains { $0.contains("no order change was aborted by a reaper") })

        r.faults[r.faults.count - 1].heldPending = 2
        r.check?.abortedOrderChanges = 1
        outcome = Judge.judge(r)
        #expect(outcome.verdict == "PASS", "\(outcome.voids)")
    }
}

