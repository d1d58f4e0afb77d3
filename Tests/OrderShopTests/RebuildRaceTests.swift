import Foundation
@testable import OrderShop
import RedisClient
import Synchronization
import TestSupport
import Testing

extension ShopIntegration {
    /// `rebuild` while commands run, with the race checked: writes completed during the rebuilds
    /// (not before or after them), and the read model is compared with the commands as the last
    /// rebuild left it: no quiet rebuild at the end to repair what a concurrent one lost.
    @Suite struct RebuildRaceTests {
        @Test func rebuildsOverlappedByWritesLoseNothing() async throws {
            try await withShop(workers: []) { shop in
                let written = Mutex(0)
                let stop = Mutex(false)
                let writer = Task {
                    var ids: [String] = []
                    var i = 0
                    while !stop.withLock({ $0 }) {
                        ids += try await shop.gateway.post("/customer", ["name": .string("W\(i)"), "email": .string("w\(i)@shop.test")]).ids
                        written.withLock { $0 += 1 }
                        i += 1
                    }
                    return ids
                }
                // Rebuild until several rebuilds had writes completing while they ran.
                var overlapped = 0
                var rebuilds = 0
                while overlapped < 3 && rebuilds < 50 {
                    let before = written.withLock { $0 }
                    _ = try await shop.store.rebuild(.customer)
                    if written.withLock({ $0 }) > before { overlapped += 1 }
                    rebuilds += 1
                }
                stop.withLock { $0 = true }
                let ids = try await writer.value
                #expect(overlapped >= 3, "writes overlapped \(overlapped) of \(rebuilds) rebuilds")
                let listed = try #require(try await shop.gateway.get("/customers").json?.arrayValue).compactMap { $0["id"]?.stringValue }
                #expect(listed == ids)
            }
        }
    }
}
