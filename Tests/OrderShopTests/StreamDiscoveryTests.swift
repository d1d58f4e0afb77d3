import Foundation
@testable import OrderShop
import RedisClient
import TestSupport
import Testing

/// The rate charts' sampler finds each node's streams (a SCAN over every key) once per period
/// instead of at every sample; a stream deleted meanwhile is skipped, not an error, and makes
/// the next sample look again. The page's own reads find the streams every time.
@Suite struct StreamDiscoveryTests {
    /// SCAN calls the server has answered (INFO commandstats).
    static func scans(_ pool: RedisConnectionPool) async throws -> Int {
        let stats = try await pool.send(INFO(section: "commandstats"))
        // "calls=3,usec=...": absent until the first SCAN.
        return stats["cmdstat_scan"].flatMap { $0.split(separator: ",").first?.split(separator: "=").last.flatMap { Int($0) } } ?? 0
    }

    static func names(_ snapshot: OperationsSnapshot) -> [String] { snapshot.streams.map(\.name).sorted() }

    @Test("the sampler walks the keyspace once per period; a deleted stream is skipped and makes it look again")
    func samplerKeepsWhatItFound() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            for stream in ["s1", "s2"] {
                _ = try await pool.send(XADD(RedisArgument(stream), fields: [StreamField("n", "1")]))
                _ = try await pool.send(XGROUPCREATE(RedisArgument(stream), group: "g", id: "0"))
            }
            let sampler = OperationsReader(nodes: [pool]).countsOnly(rediscoveringAfter: .seconds(600))
            let page = OperationsReader(nodes: [pool])

            var before = try await Self.scans(pool)
            #expect(Self.names(try await sampler.read()) == ["s1", "s2"])
            #expect(try await Self.scans(pool) > before, "the first sample found no streams by SCAN")
            before = try await Self.scans(pool)
            #expect(Self.names(try await sampler.read()) == ["s1", "s2"])
            #expect(try await Self.scans(pool) == before, "the second sample walked the keyspace again")

            // A stream deleted and another made: the sample skips the deleted one without failing.
            _ = try await pool.send(RawCommand(["DEL", "s2"], keys: ["s2"]))
            _ = try await pool.send(XADD("s3", fields: [StreamField("n", "1")]))
            #expect(Self.names(try await sampler.read()) == ["s1"])
            // ... and looks again at the next one, which finds the new stream.
            before = try await Self.scans(pool)
            #expect(Self.names(try await sampler.read()) == ["s1", "s3"])
            #expect(try await Self.scans(pool) > before)

            // The page finds the streams at every read.
            _ = try await pool.send(XADD("s4", fields: [StreamField("n", "1")]))
            before = try await Self.scans(pool)
            #expect(Self.names(try await page.read()) == ["s1", "s3", "s4"])
            #expect(try await Self.scans(pool) > before)
            #expect(Self.names(try await page.read()) == ["s1", "s3", "s4"])
            await pool.shutdown()
        }
    }

    @Test("the sampler looks again once its period is over")
    func samplerLooksAgainAfterItsPeriod() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            _ = try await pool.send(XADD("s1", fields: [StreamField("n", "1")]))
            let sampler = OperationsReader(nodes: [pool]).countsOnly(rediscoveringAfter: .milliseconds(200))
            #expect(Self.names(try await sampler.read()) == ["s1"])
            _ = try await pool.send(XADD("s2", fields: [StreamField("n", "1")]))
            try await Task.sleep(for: .milliseconds(300))
            #expect(Self.names(try await sampler.read()) == ["s1", "s2"])
            await pool.shutdown()
        }
    }
}
