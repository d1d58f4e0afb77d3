import Foundation

/// A fault as it happened.
public struct ExecutedFault: Codable, Sendable {
    public var planned: PlannedFault
    /// Seconds after the load started.
    public var at: Double
    /// The consumer (worker faults) or stream entry (malformed) it hit.
    public var target: String?
    /// Entries the worker held (pending) just before the fault.
    public var heldPending: Int?
    /// SIGKILL: entries the killed worker still held whose mail msg had sent before the kill
    /// (by Redis's clock): the kill hit them inside the handler, after the external effect and
    /// before the settle. nil when it could not be measured.
    public var inHandler: Int?
    /// SIGSTOP: of the entries it held at the pause, how many another consumer had taken (or
    /// settled) when it was resumed, as read on the primary and confirmed by its replica: the
    /// settles the zombie still owes for them must be refused. nil when not measured. (A
    /// reclaim the primary had not replicated is no such entry: a CI run failed over without
    /// it, and the zombie resumed owning its entries again, its settles rightly accepted.)
    public var takenAtResume: Int?
    /// SIGSTOP: stale settles (foreign owner or already settled, and retries whose claim was
    /// refused) the zombie reported within 45 s of its SIGCONT; nil when not measured.
    public var refusedAfterResume: Int?
    /// Trim: entries the workers' groups still needed when it started (pending, or not yet
    /// delivered, summed over their streams): what a trim that ignored them would lose.
    public var neededAtTrim: Int?
    /// Trim: entries it removed from the event streams (not the groups' replay streams).
    public var trimmed: Int?
    /// Rebuild: swaps refused because a command appended an event between the rebuild's read
    /// and its swap (each then read the new events and tried again), over every entity type.
    public var swapsRefused: Int?
    /// Malformed and replay: the `chaos_injection` marker of the entry written (a replay must
    /// bring back exactly that entry: see ``CheckResult/replayedLetters``).
    public var marker: String?
    /// The fault could not be carried out (no worker free, Redis would not restart, the write
    /// failed...): why. A run asked to include this kind is VOID.
    public var skipped: Bool = false
    public var note: String = ""

    public init(planned: PlannedFault, at: Double, target: String? = nil, heldPending: Int? = nil, inHandler: Int? = nil, takenAtResume: Int? = nil, skipped: Bool = false,
        note: String = ""
    ) {
        self.planned = planned
        self.at = at
        self.target = target
        self.heldPending = heldPending
        self.inHandler = inHandler
        self.takenAtResume = takenAtResume
        self.skipped = skipped
        self.note = note
    }
}

actor FaultLog {
    private(set) var faults: [ExecutedFault] = []
    func append(_ f: ExecutedFault) { faults.append(f) }
}

/// Carries out the schedule.
