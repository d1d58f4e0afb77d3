import LocalRedis
import Testing

/// `LOCAL_REDIS_PORT_RANGE`: the ports a process's local servers take (the planted chaos runs,
/// side by side, each with a range of its own). What a process with the variable set does is
/// tested on `ordershop up --cluster` (ProcessLifecycleTests); here, what the variable may say.
@Suite struct PortRangeTests {
    @Test func unsetOrEmptyMeansAnyPort() throws {
        #expect(try LocalRedisServer.assignedPortRange([:]) == nil)
        #expect(try LocalRedisServer.assignedPortRange([LocalRedisServer.portRangeVariable: ""]) == nil)
    }

    @Test func aRangeIsTaken() throws {
        #expect(try LocalRedisServer.assignedPortRange([LocalRedisServer.portRangeVariable: "12000-13999"]) == 12000...13999)
        #expect(try LocalRedisServer.assignedPortRange([LocalRedisServer.portRangeVariable: "20000-20000"]) == 20000...20000)
    }

    @Test(arguments: ["12000", "13999-12000", "80-90", "12000-70000", "a-b", "12000-", "-12000", "1-2-3"])
    func anythingElseIsRefusedNamingTheVariable(_ text: String) {
        let error = #expect(throws: LocalRedisError.self) { try LocalRedisServer.assignedPortRange([LocalRedisServer.portRangeVariable: text]) }
        #expect(error?.description.contains("LOCAL_REDIS_PORT_RANGE='\(text)'") == true, "\(String(describing: error))")
    }
}
