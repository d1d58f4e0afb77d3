import AsyncHTTPClient
import Foundation
import NIOCore
import OrderShop
import RedisClient
import StreamWorker

/// One point of the run's timeline.
public struct Sample: Codable, Sendable {
    public var t: Double
    /// Entries processed so far over every worker incarnation (from /metrics).
    public var processed: Int
    /// Pending plus lag over every group; nil when Redis could not be asked.
    public var backlog: Int?
    public var mails: Int?
}

/// Watches the run: scrapes every worker incarnation's /metrics, samples the backlog, and
/// measures how long the entries of a dead (or paused) worker take to be reclaimed.
actor Observer {
    let http: HTTPClient
    let pool: any RedisClientProtocol
    let clock: RunClock
    /// The shop's partitions: the workers read each partition stream.
    let layout: ShopLayout
    /// The last counters scraped from each incarnation (by consumer name): counter -> value.
    private(set) var counters: [String: [String: Int]] = [:]
    private(set) var samples: [Sample] = []
    private(set) var watches: [String: ReclaimWatch] = [:]

    init(http: HTTPClient, pool: any RedisClientProtocol, clock: RunClock, layout: ShopLayout) {
        self.http = http
        self.pool = pool
        self.clock = clock
        self.layout = layout
    }

    /// Scrapes one incarnation; keeps its counters summed over streams and groups.
    func scrape(_ i: WorkerIncarnation) async {
        let url = "http://127.0.0.1:\(i.metricsPort)/metrics"
        guard let response = try? await http.execute(HTTPClientRequest(url: url), timeout: .seconds(2)),
            response.status.code == 200, let body = try? await response.body.collect(upTo: 8 << 20)
        else { return }
        counters[i.consumer] = Self.parse(String(buffer: body))
    }

    /// Prometheus text: `stream_worker_<name>_total{...} value`, summed per name.
    static func parse(_ text: String) -> [String: Int] {
        var out: [String: Int] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("stream_worker_") {
            let parts = line.split(separator: " ")
            guard parts.count >= 2, let value = Double(parts[parts.count - 1]) else { continue }
            var name = String(parts[0])
            if let brace = name.firstIndex(of: "{") { name = String(name[..<brace]) }
            guard name.hasSuffix("_total") else { continue }
            name = String(name.dropFirst("stream_worker_".count).dropLast("_total".count))
            out[name, default: 0] += Int(value)
        }
        return out
    }

    /// A counter summed over every incarnation ever scraped.
    func total(_ name: String) -> Int { counters.values.reduce(0) { $0 + ($1[name] ?? 0) } }

    var totals: [String: Int] {
        var out: [String: Int] = [:]
        for c in counters.values { for (k, v) in c { out[k, default: 0] += v } }
        return out
    }

    /// One timeline point.
    func sample() async {
        var backlog: Int? = 0
        for stream in WorkerStreams.all(in: layout) {
            guard let groups = try? await pool.send(XINFOGROUPS(RedisArgument(stream))) else {
                backlog = nil
                break
            }
            for g in groups where g.name != HistoryArchive.group { backlog = backlog.map { $0 + g.pending + (g.lag ?? 0) } }
        }
        let mails = try? await pool.send(XLEN(RedisArgument("mail:sent")))
        samples.append(Sample(t: clock.elapsed, processed: total("processed"), backlog: backlog, mails: mails))
    }

    /// How many entries a consumer holds now, over its group's streams (nil: Redis unreachable).
    func pending(consumer: String, group: String) async -> Int? {
        var n = 0
        for stream in WorkerStreams.streams(of: group, in: layout) {
            guard let summary = try? await pool.send(XPENDING(RedisArgument(stream), group: group)) else { return nil }
            n += summary.consumers[consumer] ?? 0
        }
        return n
    }

    /// The entries `consumer` holds, counted only once `replicas` replicas hold that state too:
    /// per stream, XPENDING, then a write of the harness's own (a fence, in the stream's slot) and
    /// WAIT on the same connection. Replication is ordered, so the fence confirmed means the
    /// claims read before it survive a failover. nil when Redis could not be asked or the replica
    /// did not confirm (cut off, or its primary down).
    func confirmedPending(consumer: String, group: String, replicas: Int) async -> Int? {
        var n = 0
        for stream in WorkerStreams.streams(of: group, in: layout) {
            do {
                n += try await pool.withConnection(forKeys: [RedisArgument(stream)]) { connection in
                    let summary = try await connection.send(XPENDING(RedisArgument(stream), group: group))
                    if replicas > 0 {
                        _ = try await connection.send(SET(RedisArgument(stream + ":chaos-pending-fence"), RedisArgument(consumer)))
                        guard try await connection.send(WAIT(replicas: replicas, timeout: .seconds(2))) >= replicas else {
                            throw ChaosError("the replica did not confirm the pending entries of \(stream)")
                        }
                    }
                    return summary.consumers[consumer] ?? 0
                }
            } catch {
                return nil
            }
        }
        return n
    }

    /// Stale settles (foreign owner or already settled) one incarnation reported at its last scrape.
    func staleSettles(of consumer: String) -> Int {
        (counters[consumer]?["foreign_settles_refused"] ?? 0) + (counters[consumer]?["already_settled"] ?? 0)
    }

    /// Starts measuring the reclaim of a consumer that just died or froze.
    func watch(consumer: String, group: String, held: Int) {
        watches[consumer] = ReclaimWatch(consumer: consumer, group: group, since: clock.elapsed, held: held)
    }

    /// Checks the open watches: a consumer whose entries are all gone from its pending list was
    /// reclaimed (a dead consumer cannot acknowledge).
    func checkWatches() async {
        for (name, w) in watches where w.reclaimedAfter == nil && w.held > 0 {
            if let n = await pending(consumer: name, group: w.group), n == 0 {
                watches[name]?.reclaimedAfter = clock.elapsed - w.since
            }
        }
    }

    /// Stops watching a consumer that came back (SIGCONT) before its entries were reclaimed.
    func unwatchIfOpen(_ consumer: String) {
        if watches[consumer]?.reclaimedAfter == nil { watches[consumer]?.held = 0 }
    }
}

/// A worker that died (or froze) holding entries, and how long until others had reclaimed them.
public struct ReclaimWatch: Codable, Sendable {
    public var consumer: String
    public var group: String
    /// Seconds after the load started.
    public var since: Double
    /// Entries it held at the fault.
    public var held: Int
    public var reclaimedAfter: Double?
}
