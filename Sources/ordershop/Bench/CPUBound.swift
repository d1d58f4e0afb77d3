import Foundation
import LocalRedis

/// What bounded a load run: the CPU seconds each process of the run spent per request, and how
/// many of the machine's cores were busy meanwhile (ours and everything else's). A run whose
/// cores were all busy is bound by CPU, and the shares say by whose; one with idle cores is
/// bound by waits (round trips, locks, too few connections).
struct CPUBound {
    struct Share {
        var name: String
        var seconds: Double
    }

    var shares: [Share]
    /// Busy CPU seconds of the whole machine over the run (every process, ours included).
    var machineBusySeconds: Double
    var wallSeconds: Double
    var cores: Int
    var requests: Int

    func microsecondsPerRequest(_ share: Share) -> Double {
        requests > 0 ? share.seconds / Double(requests) * 1e6 : .nan
    }

    var ownSeconds: Double { shares.map(\.seconds).reduce(0, +) }
    var ownCores: Double { wallSeconds > 0 ? ownSeconds / wallSeconds : 0 }
    var machineCores: Double { wallSeconds > 0 ? machineBusySeconds / wallSeconds : 0 }
    /// Cores other processes of the machine kept busy (a shared machine's builds, say).
    var otherCores: Double { max(0, machineCores - ownCores) }
    /// All cores busy (90 % or more of the run): more requests/s need less CPU per request.
    var cpuBound: Bool { machineCores >= 0.9 * Double(cores) }

    /// One line: `1.96 of 2 cores busy (others 0.10): bound by CPU; per request: ordershop up
    /// 1,330 µs (80 %), redis-server 237 µs (14 %), wrk 69 µs (4 %)`.
    var summary: String {
        let total = ownSeconds
        let parts = shares.map { share in
            let percent = total > 0 ? Int((share.seconds / total * 100).rounded()) : 0
            return "\(share.name) \(Int(microsecondsPerRequest(share).rounded())) µs (\(percent) %)"
        }
        let busy = String(format: "%.2f of %d cores busy (others %.2f)", machineCores, cores, otherCores)
        let bound = cpuBound ? "bound by CPU" : "not bound by CPU: waits bound it"
        return "\(busy): \(bound); CPU per request: \(parts.joined(separator: ", "))"
    }
}

/// Samples the CPU of running processes, of this process's children that exit meanwhile (wrk)
/// and of the machine around a run.
struct CPUBoundMeter {
    /// Running processes to account (name, pids summed under it): the server under test, redis-server(s).
    var processes: [(name: String, pids: [pid_t])]
    /// The name under which the CPU of the children that exit during the run is counted.
    var exitedChildren: String

    func measure(_ run: () async throws -> GatewayBench.Figures) async throws -> (GatewayBench.Figures, CPUBound) {
        func seconds(_ pids: [pid_t]) -> Double { pids.reduce(0) { $0 + (ProcessCPU.seconds(pid: $1) ?? 0) } }
        let before = processes.map { seconds($0.pids) }
        let childrenBefore = CPUAccounting.exitedChildrenSeconds
        let machineBefore = ProcessCPU.machineBusySeconds() ?? 0
        let start = ContinuousClock.now
        let figures = try await run()
        let elapsed = ContinuousClock.now - start
        let after = processes.map { seconds($0.pids) }
        var shares = zip(processes, zip(before, after)).map { CPUBound.Share(name: $0.0.name, seconds: max(0, $0.1.1 - $0.1.0)) }
        shares.append(CPUBound.Share(name: exitedChildren, seconds: max(0, CPUAccounting.exitedChildrenSeconds - childrenBefore)))
        let bound = CPUBound(
            shares: shares, machineBusySeconds: max(0, (ProcessCPU.machineBusySeconds() ?? 0) - machineBefore),
            wallSeconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18, cores: ProcessCPU.cores,
            requests: figures.requests)
        return (figures, bound)
    }
}
