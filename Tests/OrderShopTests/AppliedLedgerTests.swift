import Foundation
@testable import OrderShop
import RedisClient
import StreamWorker
import TestSupport
import Testing

extension ShopIntegration {
    /// The mail handlers' ledger effect is committed by the runtime's settle: once per event and
    /// group, also when the event is appended a second time (a publisher's retry) and msg is
    /// asked again under the same key.
    @Suite struct AppliedLedgerTests {
        @Test func appliedOncePerEventAndGroupEvenWhenRepeated() async throws {
            try await withShop { shop in
                let created = try await shop.gateway.post("/customers", [["name": "Ada", "email": "ada@shop.test"]])
                #expect(created.status == 200)
                let stream = EntityType.customer.stream(.created)
                let entries = try await shop.pool.send(XRANGE(RedisArgument(stream)))
                let original = try #require(entries.first)
                let eventID = try #require(original.string("event_id"))
                #expect(await eventually(timeout: .seconds(30)) { try await applied(shop.pool, stream, "crm")[eventID] == 1 })

                // A publisher's retry: the same fields, the same event id, a new entry.
                _ = try await shop.pool.send(XADD(RedisArgument(stream), fields: original.fields))
                let groups = GroupInspector(client: shop.pool)
                #expect(await eventually(timeout: .seconds(30)) {
                    let s = try await groups.groupStatus(stream: stream, group: "crm")
                    return s.pending == 0 && s.lag == 0
                })
                #expect(try await applied(shop.pool, stream, "crm") == [eventID: 1])
                #expect(try await shop.mailKeys() == ["crm:\(eventID)": 1])
                // The key carries the stream's hash tag: the same Redis Cluster slot as the stream.
                let key = AppliedLedger.appliedKey(stream: stream, group: "crm", bucket: 7)
                #expect(key == "applied:events:{customer}_created:crm:7")
                let ttl = try await shop.pool.send(["SCAN", "0", "MATCH", RedisArgument(AppliedLedger.appliedPattern(stream: stream, group: "crm")), "COUNT", 1000])
                let name = try #require(ttl.array?[1].array?.first?.string)
                #expect((try await shop.pool.send(["PTTL", RedisArgument(name)]).int ?? -1) > 0)
            }
        }
    }
}

/// The ledger of a (stream, group), summed over its hourly hashes.
private func applied(_ pool: RedisConnectionPool, _ stream: String, _ group: String) async throws -> [String: Int] {
    var out: [String: Int] = [:]
    let scan = try await pool.send(["SCAN", "0", "MATCH", RedisArgument(AppliedLedger.appliedPattern(stream: stream, group: group)), "COUNT", 1000])
    for key in scan.array?[1].array ?? [] {
        let fields = try await pool.send(["HGETALL", key.string.map { RedisArgument($0) } ?? ""]).array ?? []
        var i = 0
        while i + 1 < fields.count {
            out[fields[i].string ?? "", default: 0] += fields[i + 1].int ?? 0
            i += 2
        }
    }
    return out
}
