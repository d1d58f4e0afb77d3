import ArgumentParser
import ChaosHarness
import Foundation

@main
struct ChaosCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ordershop-chaos",
        abstract: "Kills, pauses and restarts OrderShop's workers, Redis and the network under load, then checks that nothing was lost or doubled.",
        subcommands: [RunCommand.self, ScheduleCommand.self]
    )
}

/// Options shared by `run` and `schedule`.
struct ScheduleOptions: ParsableArguments {
    @Option(help: "Seconds of load; faults fall within it.")
    var duration: Double = 90

    @Option(help: "Seed of the fault schedule (printed; the same seed gives the same schedule).")
    var seed: UInt64 = 20_261_127

    @Option(help: "Fault kinds to inject, comma-separated: \(FaultKind.allCases.map(\.rawValue).joined(separator: ",")); standard (\(FaultKind.standard.map(\.rawValue).joined(separator: ","))), operations (\(FaultKind.operations.map(\.rawValue).joined(separator: ","))), or all.")
    var faults: String = "all"

    @Option(help: "Fault kinds to leave out, comma-separated.")
    var without: String = ""

    @Option(help: "Redis: single (one server, AOF, killed and restarted), replicated (a primary and a replica behind a moving endpoint; failover, promotion and partition faults) or cluster (3 primaries with a replica each, each node behind proxies of its own; primary-kill, primary-pause, cluster-failover, slot-migration, forced-failover and node-partition faults, and reset, stall and latency on every node's client connections). With replicas, services and workers confirm with --confirm-replicas 1.")
    var topology: String = "single"

    @Option(help: "Worker processes of each kind (crm, billing).")
    var workers: Int = 3

    @Option(help: "Mean seconds between two faults.")
    var faultInterval: Double = 5

    @Option(help: "The workers' lease in seconds; a pause lasts at least two.")
    var lease: Double = 3

    @Option(help: "Partitions every entity type is spread over (every service's and worker's --partitions; 1 to 128).")
    var partitions: Int = 1

    func apply(to o: inout ChaosOptions) throws {
        o.duration = duration
        o.seed = seed
        o.workersPerKind = workers
        o.meanFaultInterval = faultInterval
        o.leaseSeconds = lease
        guard let topology = RedisTopology(rawValue: topology) else {
            throw ValidationError("unknown --topology '\(topology)'; one of \(RedisTopology.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        o.topology = topology
        var set = Set<FaultKind>()
        for name in faults.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !name.isEmpty {
            if name == "all" { set.formUnion(FaultKind.allCases.filter { $0.applies(to: topology) }); continue }
            if name == "standard" { set.formUnion((FaultKind.standard + FaultKind.replication + FaultKind.cluster).filter { $0.applies(to: topology) }); continue }
            if name == "operations" { set.formUnion(FaultKind.operations); continue }
            guard let k = FaultKind(rawValue: name) else { throw ValidationError("unknown fault kind '\(name)'") }
            guard k.applies(to: topology) else { throw ValidationError("the \(name) fault does not apply to --topology \(topology.rawValue)") }
            set.insert(k)
        }
        for name in without.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !name.isEmpty {
            guard let k = FaultKind(rawValue: name) else { throw ValidationError("unknown fault kind '\(name)'") }
            set.remove(k)
        }
        o.faults = set
        guard duration >= 20 else { throw ValidationError("--duration must be at least 20 s") }
        guard workers >= 2 else { throw ValidationError("--workers must be at least 2 (someone has to reclaim)") }
        guard lease >= 1 else { throw ValidationError("--lease must be at least 1 s") }
        guard (1...ChaosOptions.maximumPartitions).contains(partitions) else { throw ValidationError("--partitions must be 1 to \(ChaosOptions.maximumPartitions)") }
        o.partitions = partitions
    }
}

/// `ordershop-chaos run`: one chaos run (see chaos/README.md).
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Start the topology, load it, inject faults, drain, check, report.")

    @OptionGroup var schedule: ScheduleOptions

    @Option(help: "The ordershop executable.")
    var ordershop: String = "ordershop"

    @Option(help: "Where report.json, run.svg, commands.jsonl, the logs and the Redis data go.")
    var reportDir: String = "chaos-report"

    @Option(help: "Concurrent HTTP clients.")
    var clients: Int = 6

    @Option(help: "Longest wait, in seconds, for every group to drain after the load.")
    var drainTimeout: Double = 300

    @Option(help: "Plant a bug in the workers so the checker must fail the run: \(PlantedBugOption.allCases.map(\.rawValue).joined(separator: ", ")).")
    var plantBug: String?

    @Option(help: "The workers' slow-handler mode: after msg took a mail, a handler waits up to this many ms (0: off).")
    var pauseAfterMail: Int = 250

    @Flag(help: "With --plant-bug: exit 0 only when the run fails with a violation that names the bug (what make test runs).")
    var expectCaught = false

    @Flag(help: "Keep the Redis data directory after a passing run.")
    var keepData = false

    func run() async throws {
        var o = ChaosOptions()
        try schedule.apply(to: &o)
        o.ordershop = ordershop
        o.reportDirectory = reportDir
        o.clients = clients
        o.drainTimeout = drainTimeout
        if let plantBug {
            guard let bug = PlantedBugOption(rawValue: plantBug) else { throw ValidationError("unknown --plant-bug '\(plantBug)'") }
            o.plantedBug = bug
        }
        o.keepData = keepData
        if expectCaught && o.plantedBug == nil { throw ValidationError("--expect-caught needs --plant-bug") }
        o.expectCaught = expectCaught
        guard pauseAfterMail >= 0 else { throw ValidationError("--pause-after-mail must not be negative") }
        o.pauseAfterMailMs = pauseAfterMail
        let code = await ChaosRun.run(o)
        if code != 0 { throw ExitCode(code) }
    }
}

/// `ordershop-chaos schedule`: print the schedule a seed gives, without running anything.
struct ScheduleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "schedule", abstract: "Print the fault schedule of a seed.")

    @OptionGroup var schedule: ScheduleOptions

    func run() throws {
        var o = ChaosOptions()
        try schedule.apply(to: &o)
        for f in FaultSchedule.make(options: o) { print(String(format: "%6.1f s", f.at) + "  " + ChaosRun.describe(f)) }
    }
}
