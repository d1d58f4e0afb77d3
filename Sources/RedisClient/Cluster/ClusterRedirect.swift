/// What a cluster client does with an error from a node.
enum ClusterErrorAction {
    /// MOVED: the slot lives on `address` now.
    case moved(HashSlot, ClusterNodeAddress)
    /// ASK: send ASKING and the command to `address`, this once.
    case ask(ClusterNodeAddress)
    /// The command did not run; the cluster is busy or healing: wait, maybe refresh, retry.
    case waitAndRetry(refresh: Bool)
    /// The node could not be reached and the command was not written: refresh, then retry.
    case nodeUnreachable
    /// The command may have run (or failed for good): give the error to the caller.
    case fail(refresh: Bool)

    init(_ error: RedisError, from node: ClusterNodeAddress) {
        switch error.code {
        case .moved, .ask:
            // "MOVED 3999 127.0.0.1:6381" / "ASK 3999 :6381" (empty host: the node's own host).
            let parts = error.message.split(separator: " ")
            guard parts.count >= 3, let number = Int(parts[1]), let slot = HashSlot(rawValue: number),
                let target = ClusterNodeAddress(redirectTarget: parts[2], fallbackHost: node.host)
            else {
                self = .fail(refresh: true)
                return
            }
            self = error.code == .moved ? .moved(slot, target) : .ask(target)
        case .tryAgain, .loading:
            self = .waitAndRetry(refresh: false)
        case .clusterDown, .masterDown, .readOnly:
            // READONLY: a primary demoted under us refused a write; it did not run.
            self = .waitAndRetry(refresh: true)
        case .connectionRefused, .connectionClosed, .connectTimeout, .hostNotFound:
            self = .nodeUnreachable
        case .outcomeUnknown, .timeout, .io:
            // It may have run: never re-sent. The node may be gone: look again.
            self = .fail(refresh: true)
        default:
            self = .fail(refresh: false)
        }
    }
}
