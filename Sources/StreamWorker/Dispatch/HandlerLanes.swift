/// Runs the handlers: ``WorkerConfiguration/maxInFlight`` long-lived lanes fed by a
/// ``LaneQueue``, instead of a task per entry. A lane takes a chunk (one entry for a per-entry
/// handler, up to a read's worth for a batch handler), holds a handler slot per entry while the
/// handler runs, and hands each outcome on: to the settler, or to a retry that waits in a task
/// of its own so that the lane goes on with the next entries.
struct HandlerLanes: Sendable {
    let context: SubscriptionContext
    let call: HandlerCall
    let retries: RetryScheduler
    /// Handler slots, shared by the process's subscriptions.
    let permits: AsyncSemaphore
    /// Read-ahead slots, returned when an entry's handler starts.
    let prefetched: AsyncSemaphore
    let work: BatchQueue<WorkItem>
    let settled: BatchQueue<SettleItem>

    /// Runs until the work queue is finished and every lane and retry is done, or until the
    /// task is cancelled (the drain deadline): then handlers still running are cancelled and
    /// their entries stay pending for another worker.
    func run() async {
        let lanes = LaneQueue<WorkItem>(chunk: call.chunkSize)
        await withDiscardingTaskGroup { group in
            for _ in 0..<context.configuration.maxInFlight {
                group.addTask { await lane(lanes) }
            }
            while true {
                let items = await work.next()
                if items.isEmpty { break }
                lanes.append(contentsOf: items)
            }
            lanes.finish()
        }
    }

    private func lane(_ lanes: LaneQueue<WorkItem>) async {
        await withDiscardingTaskGroup { waiting in
            while let items = await lanes.next() {
                // Cancelled (the drain deadline, a hard stop): no new handler call. The queue
                // still hands out what was read ahead; each chunk is let go (left pending for
                // another worker) until it is empty.
                if Task.isCancelled {
                    abandon(items)
                    continue
                }
                // While the downstream is unavailable, lanes wait here (holding no handler slot)
                // and one probe at a time goes through. Not through a drain: what waits behind an
                // open breaker is let go when the drain starts (left pending for another worker),
                // instead of holding the drain until its deadline for a downstream that is down.
                // (Only a tripped breaker is waited on this way: a task group per call would
                // cost the common, closed case.)
                let probe: Bool
                do {
                    if context.breaker.isTripped {
                        guard let admitted = try await context.drain.untilFired({ try await context.breaker.admit() }) else {
                            abandon(items)
                            continue
                        }
                        probe = admitted
                    } else {
                        probe = try await context.breaker.admit()
                    }
                } catch {
                    abandon(items)
                    continue
                }
                do {
                    try await permits.acquire(items.count)
                } catch {
                    if probe { context.breaker.endProbe() }
                    abandon(items)
                    continue
                }
                defer { if probe { context.breaker.endProbe() } }
                prefetched.release(items.count)
                await call.handle(items) { _, outcome in
                    switch outcome {
                    case .settle(let settle):
                        settled.append(settle)
                    case .retry(let item, let error):
                        waiting.addTask { await retries.retry(item, after: error) }
                    }
                }
                permits.release(items.count)
            }
        }
    }

    /// Lets go of entries whose handler will not be called: they stay pending in Redis (another
    /// worker reclaims them one lease later) and give back their read-ahead room.
    private func abandon(_ items: [WorkItem]) {
        context.held.release(items.map(\.id))
        prefetched.release(items.count)
    }
}
