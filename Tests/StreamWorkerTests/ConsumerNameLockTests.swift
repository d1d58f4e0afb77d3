import Foundation
import Logging
import RedisClient
@testable import StreamWorker
import Synchronization
import TestSupport
import Testing

/// Set once, read from any task.
private final class Flag: Sendable {
    private let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}

@Suite("The consumer name lock")
struct ConsumerNameLockTests {
    /// A CI chaos run restarted a worker into a `redis-full` fault: the lock's SET met OOM and the
    /// worker exited 1, though Redis took writes again 4.7 s later.
    @Test("a lock whose SET meets a full Redis waits until Redis takes writes again, then holds the key")
    func waitsOutAFullRedis() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            _ = try await pool.send(RawCommand(["CONFIG", "SET", "maxmemory-policy", "noeviction"], keys: []))
            _ = try await pool.send(RawCommand(["CONFIG", "SET", "maxmemory", "1"], keys: []))
            let taken = Flag()
            let ended = Flag()
            let lock = ConsumerNameLock(
                stream: "s", group: "g", consumer: "c1", lease: .seconds(3), pool: pool, logger: Logger(label: "test"),
                acquired: { taken.set() })
            let running = Task {
                defer { ended.set() }
                try await lock.run()
            }
            // Refused (OOM) for a while: neither taken nor ended (it threw at once before).
            try await Task.sleep(for: .seconds(1))
            #expect(!taken.isSet)
            #expect(!ended.isSet, "the lock gave up on a full Redis")
            _ = try await pool.send(RawCommand(["CONFIG", "SET", "maxmemory", "0"], keys: []))
            #expect(await eventually { taken.isSet }, "the lock was not taken once Redis took writes")
            let key = RedisArgument("consumer-lock:s:g:c1")
            #expect(try await pool.send(RawCommand(["GET", key], keys: [key], readOnly: true)).string?.contains("pid=") == true)
            running.cancel()
            _ = await running.result
            await pool.shutdown()
        }
    }

    @Test("a holder of this host whose process has exited but is not reaped yet (a zombie) is gone; a live one is not")
    func zombieHolderIsGone() async throws {
        var pid: pid_t = 0
        var argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
        defer { for a in argv { free(a) } }
        try #require(posix_spawn(&pid, "/bin/true", nil, nil, &argv, environ) == 0)
        // Reaped at the end only: until then the child is a zombie once it has exited.
        defer { var status: Int32 = 0; waitpid(pid, &status, 0) }
        let exited = await eventually { ConsumerNameLock.isZombie(pid) }
        #expect(exited)
        #expect(kill(pid, 0) == 0, "a zombie still answers kill(pid, 0): the check this test is about")
        #expect(ConsumerNameLock.isPreviousIncarnation("host=\(ConsumerNameLock.host) pid=\(pid) token=t"))
        #expect(!ConsumerNameLock.isZombie(getpid()))
        #expect(!ConsumerNameLock.isPreviousIncarnation("host=\(ConsumerNameLock.host) pid=\(getppid()) token=t"))
        #expect(!ConsumerNameLock.isPreviousIncarnation("host=another-host pid=\(pid) token=t"))
    }
}
