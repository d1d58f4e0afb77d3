import ServiceLifecycle

/// A part of a process that failed, or ended while nothing asked it to stop: the process ends
/// with it (non-zero), and this says which part and why.
public struct ServiceFailure: Error, CustomStringConvertible {
    /// The part, as users know it: "metrics endpoint", "crm worker", "gateway".
    public let service: String
    /// Why it failed; nil when it returned although nothing asked it to stop.
    public let reason: (any Error)?

    public init(service: String, reason: (any Error)?) {
        self.service = service
        self.reason = reason
    }

    public var description: String {
        guard let reason else { return "\(service) stopped although nothing asked it to; stopping the process" }
        return "\(service) failed: \(reason)"
    }
}

/// Runs a service under a name, so that its end is never silent: returning while the group is not
/// shutting down is a ``ServiceFailure`` (a worker that stops reading must not leave a process that
/// looks alive), and an error is rethrown with the service's name. ``ListenFailure`` passes
/// through as it is: it names its listener already.
///
/// Use it in a group from ``processServiceGroup(_:logger:maximumGracefulShutdown:)``, whose
/// other services then stop gracefully and whose `run()` throws the failure.
public struct SupervisedService: Service {
    public let name: String
    private let service: any Service

    public init(_ name: String, _ service: any Service) {
        self.name = name
        self.service = service
    }

    public func run() async throws {
        do {
            try await service.run()
        } catch let failure as ListenFailure {
            throw failure
        } catch let failure as ServiceFailure {
            throw failure
        } catch is CancellationError where Task.isCancelled {
            throw CancellationError()
        } catch {
            throw ServiceFailure(service: name, reason: error)
        }
        if !Task.isShuttingDownGracefully && !Task.isCancelled {
            throw ServiceFailure(service: name, reason: nil)
        }
    }
}
