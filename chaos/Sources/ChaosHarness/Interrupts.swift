import Dispatch
import Foundation
import Synchronization

/// The pids of every process the run started, so that Ctrl-C (or SIGTERM from CI) stops them
/// instead of leaving them orphaned.
public enum ChildRegistry {
    private static let pids = Mutex<Set<Int32>>([])
    /// Kept alive for the whole run; written once, from the main task, before anything else runs.
    nonisolated(unsafe) private static var sources: [any DispatchSourceSignal] = []

    static func add(_ pid: Int32?) {
        guard let pid else { return }
        pids.withLock { _ = $0.insert(pid) }
    }

    /// On SIGINT or SIGTERM: SIGCONT and SIGKILL every child we started (by pid), then exit.
    public static func installHandlers() {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                let all = pids.withLock { $0 }
                for pid in all {
                    kill(pid, SIGCONT)
                    kill(pid, SIGKILL)
                }
                print("chaos: interrupted; stopped \(all.count) child processes")
                exit(130)
            }
            source.resume()
            sources.append(source)
        }
    }
}
