import Foundation

/// Whether msg is down (a msg outage fault), and since when it is up.
actor MsgState {
    private var down = 0
    private var upSince = ContinuousClock.now

    func wentDown() { down += 1 }

    func cameBack() {
        down -= 1
        if down == 0 { upSince = .now }
    }

    /// How long msg has been up; zero while it is down.
    func sinceUp(now: ContinuousClock.Instant) -> Duration { down > 0 ? .zero : now - upSince }
}

/// A pause that a cancelled task still waits out (`Task.sleep` would return at once): for a
/// fault's planned length, whose end (a restart) must happen in every case.
func pause(seconds: Double) async {
    guard seconds > 0 else { return }
    await withCheckedContinuation { (resume: CheckedContinuation<Void, Never>) in
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(seconds * 1000))) { resume.resume() }
    }
}

/// A mutual exclusion for async code (one Redis fault at a time).
actor AsyncLock {
    private var locked = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func withLock<T: Sendable>(_ body: @Sendable () async -> T) async -> T {
        await acquire()
        let result = await body()
        release()
        return result
    }

    private func acquire() async {
        if !locked {
            locked = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    private func release() {
        if waiters.isEmpty { locked = false } else { waiters.removeFirst().resume() }
    }
}
