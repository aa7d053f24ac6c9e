import CServalKernels
import Foundation
import ServalTensor

/// Exchanges between the rank processes (or threads) of one host through one mapped
/// file under /dev/shm. The segment holds a header (group size, abort word, per rank
/// its pid and its generation counter, each on its own cache line) and two sets of
/// slots, one slot per rank; exchange g uses set g % 2. A rank writes its slot, tags it,
/// publishes generation g (release) and waits until every rank has published g
/// (acquire); then it reads every slot of the set. Two sets make one barrier per
/// exchange enough: a rank can only start exchange g + 2 (reusing the set) after every
/// rank published g + 1, i.e. after every rank finished reading exchange g.
///
/// Waiting spins briefly, then yields, then sleeps in growing steps (up to 1 ms), so an
/// idle worker costs almost nothing; while waiting it checks the abort word and, every
/// few milliseconds, that every peer process is still alive (`/proc/PID/stat`).
public final class SharedMemoryTransport: ExchangeTransport, @unchecked Sendable {
    public let rank: Int
    public let size: Int
    public let capacity: Int
    public let path: String
    private let base: UnsafeMutableRawPointer
    private let mappedBytes: Int
    private var generation: UInt64 = 0
    private var peerPIDs: [Int32] = []

    static let magic: UInt64 = 0x5345_5256_414c_5348  // "SERVALSH"
    static let headerBytes = 16384
    static let rankStride = 128
    static let slotHeader = 64
    static let maxRanks = (headerBytes - 256) / rankStride

    /// Bytes of a segment for `size` ranks with `capacity`-byte slots.
    public static func segmentBytes(size: Int, capacity: Int) -> Int {
        headerBytes + 2 * size * (slotHeader + capacity)
    }

    /// Creates the segment file (`path`, under /dev/shm) for a group: call once, before
    /// any rank joins; the creator joins it afterwards like every other rank.
    public static func create(path: String, size: Int, capacity: Int = 4 << 20) throws {
        guard size >= 1, size <= maxRanks else { throw CommunicatorError("a group of \(size) ranks (1...\(maxRanks))") }
        guard capacity >= 64, capacity % 64 == 0 else { throw CommunicatorError("slot capacity \(capacity) bytes") }
        let bytes = segmentBytes(size: size, capacity: capacity)
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else { throw CommunicatorError("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard ftruncate(fd, off_t(bytes)) == 0 else {
            unlink(path)
            throw CommunicatorError("cannot size \(path) to \(bytes) bytes: \(String(cString: strerror(errno)))")
        }
        guard let p = mmap(nil, headerBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            unlink(path)
            throw CommunicatorError("cannot map \(path): \(String(cString: strerror(errno)))")
        }
        defer { munmap(p, headerBytes) }
        let words = p.assumingMemoryBound(to: UInt64.self)
        words[1] = UInt64(size)
        words[2] = UInt64(capacity)
        words[3] = 0  // abort: 0, or 1 + the rank that aborted
        sv_shm_store(words, magic)
    }

    /// Maps the segment at `path` as `rank` and records this process's pid in it.
    public init(path: String, rank: Int) throws {
        let fd = open(path, O_RDWR)
        guard fd >= 0 else { throw CommunicatorError("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size >= Self.headerBytes else {
            throw CommunicatorError("\(path) is not a communicator segment")
        }
        let bytes = Int(st.st_size)
        guard let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            throw CommunicatorError("cannot map \(path): \(String(cString: strerror(errno)))")
        }
        let words = p.assumingMemoryBound(to: UInt64.self)
        guard sv_shm_load(words) == Self.magic else {
            munmap(p, bytes)
            throw CommunicatorError("\(path) is not a communicator segment")
        }
        let size = Int(words[1]), capacity = Int(words[2])
        guard size >= 1, size <= Self.maxRanks, bytes == Self.segmentBytes(size: size, capacity: capacity),
            rank >= 0, rank < size
        else {
            munmap(p, bytes)
            throw CommunicatorError("\(path): rank \(rank) does not fit a segment of \(size) ranks")
        }
        self.path = path
        self.rank = rank
        self.size = size
        self.capacity = capacity
        self.base = p
        self.mappedBytes = bytes
        sv_shm_store(pidWord(rank), UInt64(getpid()))
    }

    deinit { munmap(base, mappedBytes) }

    private var words: UnsafeMutablePointer<UInt64> { base.assumingMemoryBound(to: UInt64.self) }
    private var abortWord: UnsafeMutablePointer<UInt64> { words + 3 }
    private func pidWord(_ r: Int) -> UnsafeMutablePointer<UInt64> {
        (base + 256 + r * Self.rankStride).assumingMemoryBound(to: UInt64.self)
    }
    private func generationWord(_ r: Int) -> UnsafeMutablePointer<UInt64> {
        (base + 256 + r * Self.rankStride + 64).assumingMemoryBound(to: UInt64.self)
    }
    private func slot(_ set: Int, _ r: Int) -> UnsafeMutableRawPointer {
        base + Self.headerBytes + (set * size + r) * (Self.slotHeader + capacity)
    }

    /// Waits (without a deadline, watching peers) until every rank has mapped the segment;
    /// `timeout` bounds the wait when given.
    public func waitForPeers(timeout: Double? = nil) throws {
        let deadline = timeout.map { Date().addingTimeInterval($0) }
        var waiter = Waiter()
        while (0..<size).contains(where: { sv_shm_load(pidWord($0)) == 0 }) {
            try checkAbort()
            if let deadline, Date() > deadline {
                let missing = (0..<size).filter { sv_shm_load(pidWord($0)) == 0 }
                throw CommunicatorError("ranks \(missing) did not join within \(Int(timeout ?? 0))s")
            }
            waiter.pause()
        }
        peerPIDs = (0..<size).map { Int32(truncatingIfNeeded: sv_shm_load(pidWord($0))) }
    }

    public func abort(_ reason: String) {
        _ = sv_shm_compare_exchange(abortWord, 0, UInt64(rank + 1))
    }

    /// Whether the group was aborted (by any rank, or because a peer died).
    public var isAborted: Bool { sv_shm_load(abortWord) != 0 }

    private func checkAbort() throws {
        let a = sv_shm_load(abortWord)
        guard a != 0 else { return }
        throw CommunicatorError(
            a == UInt64(rank + 1)
                ? "the rank group was aborted" : "the rank group was aborted by rank \(a - 1) (a peer failed)")
    }

    /// A peer process that is gone (or a zombie) aborts the group.
    private func checkPeers() throws {
        if peerPIDs.isEmpty { try waitForPeers() }
        let me = getpid()
        for (r, pid) in peerPIDs.enumerated() where pid != me && !Self.isAlive(pid) {
            abort("rank \(r) died")
            throw CommunicatorError("rank \(r) (pid \(pid)) exited")
        }
    }

    /// Whether process `pid` exists and is not a zombie.
    static func isAlive(_ pid: Int32) -> Bool {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return kill(pid, 0) == 0 }
        let state = text[text.index(after: close)...].trimmingCharacters(in: .whitespaces).first
        return state != "Z" && state != "X"
    }

    public func exchange(
        tag: UInt64, write: (UnsafeMutableRawPointer) throws -> Int,
        read: ([UnsafeRawBufferPointer]) throws -> Void
    ) throws {
        try checkAbort()
        if peerPIDs.isEmpty { try waitForPeers() }
        generation += 1
        let g = generation, set = Int(g & 1)
        let mine = slot(set, rank)
        let n = try write(mine + Self.slotHeader)
        guard n >= 0, n <= capacity else {
            abort("oversized contribution")
            throw CommunicatorError("exchange of \(n) bytes exceeds the \(capacity)-byte slot")
        }
        let header = mine.assumingMemoryBound(to: UInt64.self)
        header[0] = tag
        header[1] = UInt64(n)
        sv_shm_store(generationWord(rank), g)
        var waiter = Waiter()
        for r in 0..<size where r != rank {
            while sv_shm_load(generationWord(r)) < g {
                try checkAbort()
                if waiter.pause() { try checkPeers() }
            }
        }
        var parts: [UnsafeRawBufferPointer] = []
        parts.reserveCapacity(size)
        for r in 0..<size {
            let s = slot(set, r)
            let h = s.assumingMemoryBound(to: UInt64.self)
            guard h[0] == tag, h[1] <= UInt64(capacity) else {
                abort("out of step")
                throw CommunicatorError(
                    "ranks are out of step: rank \(r) runs a different collective than rank \(rank)")
            }
            parts.append(UnsafeRawBufferPointer(start: s + Self.slotHeader, count: Int(h[1])))
        }
        try read(parts)
    }

    /// Removes the segment's name (mappings stay valid); call once every rank has joined.
    public static func unlinkSegment(_ path: String) { unlink(path) }
}

/// Spin, then yield, then sleep in growing steps; `pause` returns true every few
/// milliseconds of waiting (time to check that the peers are alive).
struct Waiter {
    private var count = 0
    private var sleepMicros: UInt32 = 20
    private var sinceCheck = 0

    @discardableResult
    mutating func pause() -> Bool {
        count += 1
        if count < 4000 {
            sv_shm_relax()
            return false
        }
        if count < 6000 {
            sched_yield()
            return count == 5999
        }
        usleep(sleepMicros)
        sinceCheck += Int(sleepMicros)
        if sleepMicros < 1000 { sleepMicros = min(1000, sleepMicros * 2) }
        if sinceCheck >= 20_000 {
            sinceCheck = 0
            return true
        }
        return false
    }
}
