import RedisClient

/// Periodic work that any worker may do: gauges for each group, and removing consumers that
/// have been idle for long and hold nothing. Ends when the drain starts or its task is
/// cancelled.
struct WorkerMaintenance: Sendable {
    let client: any RedisClientProtocol
    let configuration: WorkerConfiguration
    let runners: [SubscriptionRunner]
    let drain: ShutdownSignal

    func run() async {
        let inspector = GroupInspector(client: client)
        var lastCleanup = ContinuousClock.now
        do {
            while !drain.isFired {
                for runner in runners {
                    do {
                        // A replay stream's letters are the stream's own (its runner has an origin).
                        let isReplay = runner.context.origin != nil
                        let status = try await inspector.groupStatus(stream: runner.stream, group: runner.group, countingDeadLetters: !isReplay)
                        runner.metrics.pending.record(status.pending)
                        runner.metrics.lag.record(status.lag ?? 0)
                        runner.metrics.oldestPendingAge.record(status.oldestPendingAge ?? 0)
                        runner.metrics.consumers.record(status.consumers.count)
                        if !isReplay { runner.metrics.deadLetterLength.record(status.deadLetters) }
                    } catch {
                        if FailureKind(error) == .cancelled { return }
                    }
                }
                if ContinuousClock.now - lastCleanup > min(configuration.removeIdleConsumersAfter / 4, .seconds(60)) {
                    lastCleanup = .now
                    for runner in runners { await runner.membership.removeIdleConsumers() }
                }
                guard try await drain.sleep(for: configuration.inspectionInterval) else { return }
            }
        } catch {
            return
        }
    }
}
