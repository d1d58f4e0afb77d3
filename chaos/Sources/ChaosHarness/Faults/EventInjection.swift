import AsyncHTTPClient
import Foundation
import Logging
import OrderShop
import RedisClient
import StreamWorker

/// Entries the harness writes into the event streams itself: malformed events (which must be
/// dead-lettered) and a publisher's duplicates (which must not be applied twice).
extension FaultInjector {
    /// Writes a malformed event straight into a stream. Each carries `chaos_injection` (a unique
    /// marker), so the checker knows exactly which entries must end in the dead letters, even one
    /// whose XADD answer was lost.
    func injectMalformed(_ fault: PlannedFault, _ record: ExecutedFault) async -> ExecutedFault {
        var done = record
        let stream = fault.stream ?? WorkerStreams.streams(of: "crm", in: options.layout)[0]
        var shape: [StreamField] = []
        switch fault.variant ?? 0 {
        case 0: done.note = "no entity field"
        case 1:
            // With an `entity_id` naming nobody, as the scripts' events carry one: a rebuild or
            // snapshot that took it as that entity's state would serve it (the checker reads
            // the read models' stored values: `unreadableEntities`).
            shape.append(StreamField("entity_id", UUID().uuidString.lowercased()))
            shape.append(StreamField("entity", "{\"id\": \"broken"))
            done.note = "entity is not JSON (with an entity_id)"
        default:
            shape.append(StreamField("entity", "{\"id\": 42, \"name\": null}"))
            done.note = "entity of the wrong shape"
        }
        for attempt in 0..<40 {
            // A marker per attempt: an attempt whose answer was lost, or not confirmed, may
            // still be there, and is then an injection of its own that must be dead-lettered.
            let marker = UUID().uuidString.lowercased()
            let fields = [StreamField("event_id", UUID().uuidString.lowercased()), StreamField("chaos_injection", marker)] + shape
            if let id = try? await append(stream, fields) {
                done.target = "\(stream) \(id)"
                done.marker = marker
                return done
            }
            if attempt == 39 {
                done.note += "; XADD failed"
                done.skipped = true
            }
            do { try await Task.sleep(for: .milliseconds(500)) } catch { return done }
        }
        return done
    }

    /// An entry the harness appends; in a topology with replicas it counts only once the replica
    /// has it: a failover loses an unconfirmed one, and the fault that needed it is then not
    /// carried out (seen: a replay VOID in a 5-minute run, its malformed entry lost).
    func append(_ stream: String, _ fields: [StreamField]) async throws -> String? {
        let add = XADD(RedisArgument(stream), fields: fields)
        guard options.topology.hasReplicas else { return try await pool.send(add) }
        return try await pool.withConnection(forKeys: [RedisArgument(stream)]) { connection in
            let id = try await connection.send(add)
            guard try await connection.send(WAIT(replicas: 1, timeout: .seconds(2))) >= 1 else {
                throw ChaosError("the replica did not confirm the entry appended to \(stream)")
            }
            return id
        }
    }

    /// Appends the newest entries of a stream again, fields and event id unchanged, as a
    /// publisher does that retries an XADD whose reply it lost. Each copy also carries
    /// `chaos_duplicate_of` (the original's id), so that the checker counts it as the same event
    /// again, not as a command's second event; the workers ignore that field.
    func appendDuplicates(_ fault: PlannedFault, _ record: ExecutedFault) async -> ExecutedFault {
        var done = record
        let stream = fault.stream ?? WorkerStreams.streams(of: "crm", in: options.layout)[0]
        let count = max(1, fault.variant ?? 1)
        for attempt in 0..<40 {
            do {
                let newest = try await pool.send(XRANGE(RedisArgument(stream), count: 50, reverse: true))
                let originals = newest.filter {
                    $0[History.injectionField] == nil && $0[History.duplicateField] == nil && $0["event_id"] != nil
                }.prefix(count)
                guard !originals.isEmpty else {
                    done.skipped = true
                    done.note = "no event in \(stream) to repeat"
                    return done
                }
                var ids: [String] = []
                for original in originals {
                    let fields = original.fields + [StreamField(History.duplicateField, original.id)]
                    ids.append(try await append(stream, fields) ?? "?")
                }
                done.target = "\(stream) \(originals.map(\.id).joined(separator: ","))"
                done.note = "\(ids.count) entries appended again (same event ids) as \(ids.joined(separator: ","))"
                return done
            } catch {
                if attempt == 39 {
                    done.skipped = true
                    done.note = "XADD failed: \(error)"
                }
                do { try await Task.sleep(for: .milliseconds(500)) } catch { return done }
            }
        }
        return done
    }
}
