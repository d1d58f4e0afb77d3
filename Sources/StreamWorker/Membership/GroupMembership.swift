import RedisClient

/// The consumer's place in its group: creating the group, recreating it after NOGROUP, leaving
/// it on shutdown when it holds nothing, and removing consumers that died idle.
struct GroupMembership: Sendable {
    let context: SubscriptionContext

    /// Creates the group if it does not exist (BUSYGROUP means it does).
    func ensureGroup() async throws {
        do {
            _ = try await context.client.send(
                XGROUPCREATE(context.streamKey, group: context.group, id: context.subscription.start.groupID, makeStream: true))
            context.logger.info("created consumer group", metadata: ["from": "\(context.subscription.start.groupID)"])
        } catch let error as RedisError where error.code == .busyGroup {
            return
        } catch let error as RedisError where error.code == .outOfMemory {
            // A full Redis (maxmemory, noeviction) refuses XGROUP CREATE before it looks for the
            // group: a worker started while Redis was full waited for memory to join a group
            // that existed, doing nothing while its /healthz said ok (trial N), though reading
            // and acknowledging need no memory. A group that exists is joined.
            let groups = (try? await context.client.send(XINFOGROUPS(context.streamKey))) ?? []
            guard groups.contains(where: { $0.name == context.group }) else { throw error }
        }
    }

    /// Creates the group at start, retrying with backoff while Redis cannot be reached (or
    /// refuses). False when the drain started first, or for a replay stream the ACL user may not
    /// touch (the worker runs without replays; logged once); throws `CancellationError` when
    /// cancelled.
    func ensureGroupAtStart() async throws -> Bool {
        var attempt = 0
        var refusals = 0
        while true {
            do {
                guard
                    try await context.drain.untilFired({ () async throws -> Bool in
                        try await ensureGroup()
                        try await requireReclaiming()
                        return true
                    }) != nil
                else { return false }
                return true
            } catch {
                if FailureKind(error) == .cancelled { throw CancellationError() }
                if let redisError = error as? RedisError, redisError.code == .noPermission {
                    if context.origin != nil {
                        context.logger.error(
                            "no permission on this group's replay stream; dlq replay will not reach this worker until its ACL user may use the key",
                            metadata: ["error": "\(error)"])
                        return false
                    }
                    // The stream itself: this worker cannot do its job with this user. Retried
                    // for ever, it logged a warning a second while its /healthz said ok (found by
                    // a user-style pass with the CRM worker's user given to billing). A few tries
                    // first: an ACL being rolled out node by node (a cluster's ACLs are not
                    // replicated) may not have reached this node yet.
                    refusals += 1
                    if refusals < Self.permissionRefusalsBeforeGivingUp {
                        attempt += 1
                        context.logger.warning("no permission on the stream yet; retrying", metadata: ["error": "\(error)", "attempt": "\(attempt)"])
                        guard try await context.drain.sleep(for: context.redisBackoff(attempt: attempt) + .seconds(2)) else { return false }
                        continue
                    }
                    throw RedisError(
                        .noPermission,
                        "the Redis user may not use consumer group \(context.group) of stream \(context.stream) as a worker does (\(redisError.message)); give this worker a user whose ACL allows it (deploy/redis/users.acl)",
                        underlying: redisError)
                }
                attempt += 1
                context.logger.warning("cannot create consumer group yet; retrying", metadata: ["error": "\(error)", "attempt": "\(attempt)"])
                guard try await context.drain.sleep(for: context.redisBackoff(attempt: attempt)) else { return false }
            }
        }
    }

    /// Tries XAUTOCLAIM once, the reclaimer's command, as the group's reads do not: a worker
    /// whose user lacked it started, said ok on `/healthz`, and never took over a dead
    /// consumer's entries, logging "reclaim failed" (a trial). A NOPERM here ends the worker at
    /// start, as one on the stream does. From the largest id there is, so that it scans no
    /// pending entry: XAUTOCLAIM drops a pending entry the stream no longer has whatever its
    /// idle time, and from the start it took those the reclaimer counts as lost to trimming.
    func requireReclaiming() async throws {
        _ = try await context.client.send(
            XAUTOCLAIM(
                context.streamKey, group: context.group, consumer: context.consumer, minIdle: .seconds(100 * 365 * 24 * 3600),
                start: "18446744073709551615-18446744073709551615", count: 1))
    }

    /// NOPERMs on the stream at start before the worker gives up (about 2 s apart).
    static let permissionRefusalsBeforeGivingUp = 3

    /// NOGROUP at run time: the stream or the group was deleted. Recreate and go on (after a
    /// pause when that fails). Throws `CancellationError` when cancelled.
    func recreateGroup(after error: any Error) async throws {
        context.logger.warning("consumer group missing (NOGROUP); recreating it", metadata: ["error": "\(error)"])
        do {
            try await ensureGroup()
            context.count(.groupsRecreated)
        } catch {
            if FailureKind(error) == .cancelled { throw CancellationError() }
            context.logger.error("cannot recreate consumer group", metadata: ["error": "\(error)"])
            try await Task.sleep(for: .seconds(1))
        }
    }

    /// Keeps this consumer listed in its group, and seen, while it reads
    /// (``WorkerScripts/announceConsumer``: when it holds nothing, an empty read of its own
    /// history), now and every ``WorkerConfiguration/inspectionInterval``, until the drain starts
    /// or the task is cancelled. Why: Redis 7.0 lists a consumer only once an entry was delivered
    /// to it (a blocked read creates none, nor does an XAUTOCLAIM that claims nothing), and its
    /// `idle` counts from that delivery, so `ordershop status` showed no consumer of a quiet
    /// group, nor of any replay stream, while its workers ran (a user-style trial), and the other
    /// workers' clean-up (``removeIdleConsumers()``: idle for
    /// ``WorkerConfiguration/removeIdleConsumersAfter``, holding nothing) removed live quiet
    /// consumers as if dead. XGROUP CREATECONSUMER listed them but left `idle` growing, so the
    /// clean-up removed them every 10 minutes (a review). Runs among the readers, so it has ended
    /// before the runner leaves the group (``leaveIfEmpty()``), which it would undo.
    func announceWhileReading() async {
        let call = ConsumerScriptCall(WorkerScripts.announceConsumer, stream: context.stream, group: context.group, consumer: context.consumer)
        var warnedOfPermission = false
        while !context.drain.isFired {
            do {
                _ = try await context.client.run(call)
            } catch {
                if FailureKind(error) == .cancelled { return }
                if let redisError = error as? RedisError, redisError.isACLRefusal, !warnedOfPermission {
                    // An ACL without EVALSHA, XREADGROUP or XPENDING on the stream (inside the
                    // script Redis 7.0 words it as an ERR): the worker reads, but status may not
                    // list it and other workers may remove it while it is quiet.
                    warnedOfPermission = true
                    context.logger.warning(
                        "no permission to list this consumer in its group; status may not show it while it receives nothing",
                        metadata: ["error": "\(error)"])
                } else {
                    // NOGROUP (the group or its stream was deleted: a reader recreates it) or
                    // Redis away: the next round tries again; the readers report what matters.
                    context.logger.debug("could not list this consumer in its group", metadata: ["error": "\(error)"])
                }
            }
            do {
                guard try await context.drain.sleep(for: context.configuration.inspectionInterval) else { return }
            } catch {
                return
            }
        }
    }

    /// Leaves the group if this consumer holds no pending entries (checked atomically).
    func leaveIfEmpty() async {
        do {
            if try await context.client.run(ConsumerScriptCall(WorkerScripts.leaveGroup, stream: context.stream, group: context.group, consumer: context.consumer)) {
                context.logger.info("left the consumer group")
            } else {
                context.logger.warning("still holds pending entries; staying in the group so that they are reclaimed")
            }
        } catch {
            // NOGROUP: the group (or its stream) does not exist, so there is nothing to leave: a
            // worker stopped before it created its groups (`ordershop up` stopping at once when a
            // port was taken warned once per stream), or the stream was deleted.
            if case .groupMissing = FailureKind(error) {
                context.logger.debug("no consumer group to leave", metadata: ["error": "\(error)"])
            } else {
                context.logger.warning("could not leave the consumer group", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Removes consumers idle for long that hold nothing.
    func removeIdleConsumers() async {
        do {
            let names = try await context.client.run(
                RemoveIdleConsumersCall(
                    stream: context.stream, group: context.group, idle: context.configuration.removeIdleConsumersAfter, except: context.consumer))
            if !names.isEmpty { context.logger.info("removed idle consumers", metadata: ["consumers": "\(names)"]) }
        } catch {
            context.logger.debug("idle consumer clean-up failed", metadata: ["error": "\(error)"])
        }
    }
}

/// A script on one consumer of a group that answers 1 or 0: ``WorkerScripts/leaveGroup`` (true:
/// it left) and ``WorkerScripts/announceConsumer`` (true: marked seen, it held nothing).
struct ConsumerScriptCall: ScriptCall {
    let script: RedisScript
    let keys: [RedisArgument]
    let arguments: [RedisArgument]

    init(_ script: RedisScript, stream: String, group: String, consumer: String) {
        self.script = script
        keys = [RedisArgument(stream)]
        arguments = [RedisArgument(group), RedisArgument(consumer)]
    }

    func decode(_ reply: RESPValue) throws -> Bool {
        guard let done = reply.int else { throw unexpected(reply) }
        return done == 1
    }
}

/// ``WorkerScripts/removeIdleConsumers``: the names removed.
struct RemoveIdleConsumersCall: ScriptCall {
    var script: RedisScript { WorkerScripts.removeIdleConsumers }
    let keys: [RedisArgument]
    let arguments: [RedisArgument]

    init(stream: String, group: String, idle: Duration, except consumer: String) {
        keys = [RedisArgument(stream)]
        arguments = [RedisArgument(group), RedisArgument(milliseconds: idle), RedisArgument(consumer)]
    }

    func decode(_ reply: RESPValue) throws -> [String] {
        guard let names = reply.array else { throw unexpected(reply) }
        return names.compactMap(\.string)
    }
}
