import Foundation
import RedisClient
import StreamWorker

/// The runtime's own record of what it applied: the mail handlers' Redis effect, committed by the
/// worker's settle script atomically with the idempotency marker and the XACK, so that an event
/// counted here twice means the runtime applied it twice, whatever msg did with the mail.
///
/// Per (stream, group) and hour of application, a hash `applied:<stream>:<group>:<hour>` counts
/// per event id how often the settle committed its effects (it must be 1), and a hash
/// `msg-repeats:<stream>:<group>:<hour>` counts the applications for which msg answered
/// `duplicate` (the mail had been handed over by an earlier handling whose settle never committed:
/// expected under at-least-once delivery, msg's idempotency keeps it one mail). Both keys carry
/// the stream's hash tag (``StreamKeys/slotTagged(_:)``), so they live in the stream's slot.
///
/// Cost and bound: one HINCRBY and one PEXPIREAT per applied event and group, in the settle
/// script the runtime runs anyway (two more when msg repeated), and about 90 bytes of Redis
/// memory per event and group (a 36-character event id and a small integer in a hash field).
/// Each hour's hash expires `retentionSeconds` (25 h) after its hour ended, so the ledger holds
/// at most the last 26 hours of events: a seventh of what the idempotency markers, kept 7 days
/// in hashes of the same shape, already hold.
public enum AppliedLedger {
    /// The length of one bucket.
    public static let bucketSeconds: Int64 = 3600
    /// How long a bucket is kept after its hour ended.
    public static let retentionSeconds: Int64 = 25 * 3600

    /// The hash counting applications in one bucket.
    public static func appliedKey(stream: String, group: String, bucket: Int64) -> String {
        "applied:\(StreamKeys.slotTagged(stream)):\(group):\(bucket)"
    }

    /// The hash counting msg's `duplicate` answers in one bucket.
    public static func msgRepeatsKey(stream: String, group: String, bucket: Int64) -> String {
        "msg-repeats:\(StreamKeys.slotTagged(stream)):\(group):\(bucket)"
    }

    /// SCAN patterns matching every bucket of a (stream, group).
    public static func appliedPattern(stream: String, group: String) -> String {
        "applied:\(StreamKeys.slotTagged(stream)):\(group):*"
    }

    public static func msgRepeatsPattern(stream: String, group: String) -> String {
        "msg-repeats:\(StreamKeys.slotTagged(stream)):\(group):*"
    }

    /// The Redis effects that record one application of a delivery.
    public static func effects(for delivery: Delivery, msgRepeated: Bool, now: Date = Date()) -> [[RedisArgument]] {
        let bucket = Int64(now.timeIntervalSince1970) / bucketSeconds
        let expireAt = RedisArgument(Int(((bucket + 1) * bucketSeconds + retentionSeconds) * 1000))
        let event = RedisArgument(delivery.eventID)
        let applied = RedisArgument(appliedKey(stream: delivery.stream, group: delivery.group, bucket: bucket))
        var out: [[RedisArgument]] = [["HINCRBY", applied, event, 1], ["PEXPIREAT", applied, expireAt]]
        if msgRepeated {
            let repeats = RedisArgument(msgRepeatsKey(stream: delivery.stream, group: delivery.group, bucket: bucket))
            out += [["HINCRBY", repeats, event, 1], ["PEXPIREAT", repeats, expireAt]]
        }
        return out
    }
}
