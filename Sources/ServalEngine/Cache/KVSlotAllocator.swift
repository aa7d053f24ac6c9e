/// Hands out KV token slots from a fixed pool `0 ..< capacity`, a page at a time.
///
/// A page is `pageSize` consecutive slots; a sequence owns whole pages, so its
/// slots for positions `k*pageSize ..< (k+1)*pageSize` always lie in one page and
/// a sequence that grows by one token only takes a new page when it crosses a
/// page boundary. With `pageSize == 1` this is a plain free list of slots.
///
/// The allocator knows only free vs. taken; who holds a taken page (a running
/// request or the radix cache) is tracked by its callers.
public struct KVSlotAllocator: Sendable {
    public let capacity: Int
    public let pageSize: Int
    /// Free page ids, popped from the end (LIFO keeps recently freed pages warm in cache).
    private var freePages: [Int32]
    /// `true` for each page currently handed out.
    private var taken: [Bool]

    public init(capacity: Int, pageSize: Int = 1) throws {
        guard pageSize >= 1 else { throw EngineError.invalidConfig("page size must be at least 1, got \(pageSize)") }
        guard capacity >= pageSize else {
            throw EngineError.invalidConfig("KV pool of \(capacity) tokens is smaller than one page (\(pageSize))")
        }
        guard capacity <= Int(Int32.max) else {
            throw EngineError.invalidConfig("KV pool of \(capacity) tokens exceeds Int32 slot ids")
        }
        let pages = capacity / pageSize
        self.capacity = pages * pageSize
        self.pageSize = pageSize
        self.freePages = (0..<Int32(pages)).reversed()
        self.taken = Array(repeating: false, count: pages)
    }

    public var pageCount: Int { taken.count }
    /// Free slots (whole free pages × page size).
    public var freeSlots: Int { freePages.count * pageSize }
    public var usedSlots: Int { capacity - freeSlots }

    /// Pages needed to grow a sequence holding `length` positions by `count` more.
    public func pagesNeeded(growing length: Int, by count: Int) -> Int {
        let before = (length + pageSize - 1) / pageSize
        let after = (length + count + pageSize - 1) / pageSize
        return after - before
    }

    /// Slots that must be free to grow a sequence of `length` positions by `count`.
    public func slotsNeeded(growing length: Int, by count: Int) -> Int {
        pagesNeeded(growing: length, by: count) * pageSize
    }

    public func canAllocate(_ count: Int) -> Bool {
        pagesNeeded(growing: 0, by: count) <= freePages.count
    }

    public func canGrow(_ slots: [Int32], by count: Int) -> Bool {
        pagesNeeded(growing: slots.count, by: count) <= freePages.count
    }

    /// Slots for `count` new positions of a fresh sequence, or nil (nothing taken) when the pool is short.
    public mutating func allocate(_ count: Int) -> [Int32]? {
        var slots: [Int32] = []
        return grow(&slots, by: count) ? slots : nil
    }

    /// Appends slots for `count` more positions to `slots` (a sequence's slot list whose
    /// last page may be partly used). Returns false and changes nothing when short.
    public mutating func grow(_ slots: inout [Int32], by count: Int) -> Bool {
        precondition(count >= 0, "negative slot count")
        let newPages = pagesNeeded(growing: slots.count, by: count)
        guard newPages <= freePages.count else { return false }
        slots.reserveCapacity(slots.count + count)
        var remaining = count
        // Fill the rest of the last, partly used page first.
        if let last = slots.last, slots.count % pageSize != 0 {
            var next = last + 1
            while remaining > 0, Int(next) % pageSize != 0 {
                slots.append(next)
                next += 1
                remaining -= 1
            }
        }
        for _ in 0..<newPages {
            let page = freePages.removeLast()
            taken[Int(page)] = true
            let base = Int(page) * pageSize
            let n = min(pageSize, remaining)
            for s in 0..<n { slots.append(Int32(base + s)) }
            remaining -= n
        }
        assert(remaining == 0)
        return true
    }

    /// Returns the pages that `slots` lie in. Every slot of such a page must be given up
    /// by its holder: callers pass either whole pages or a sequence's page-aligned tail.
    public mutating func free<S: Swift.Sequence>(_ slots: S) where S.Element == Int32 {
        var lastPage: Int32 = -1
        for slot in slots {
            let page = slot / Int32(pageSize)
            if page == lastPage { continue }
            lastPage = page
            precondition(page >= 0 && Int(page) < taken.count, "slot \(slot) outside the KV pool")
            // A page can be listed twice only if a caller frees the same slots twice: a bug upstream.
            precondition(taken[Int(page)], "double free of KV page \(page)")
            taken[Int(page)] = false
            freePages.append(page)
        }
    }

    /// Frees everything (used by `/flush_cache` when no request holds slots).
    public mutating func reset() {
        freePages = (0..<Int32(taken.count)).reversed()
        for i in taken.indices { taken[i] = false }
    }

    /// Checks free + taken = total, with no page both free and taken and none listed twice.
    public func checkIntegrity() throws {
        var seen = Array(repeating: false, count: taken.count)
        for page in freePages {
            guard page >= 0, Int(page) < taken.count else {
                throw EngineError.integrity("free page \(page) out of range")
            }
            guard !seen[Int(page)] else { throw EngineError.integrity("page \(page) is on the free list twice") }
            guard !taken[Int(page)] else { throw EngineError.integrity("page \(page) is both free and taken") }
            seen[Int(page)] = true
        }
        let takenCount = taken.reduce(0) { $0 + ($1 ? 1 : 0) }
        guard takenCount + freePages.count == taken.count else {
            throw EngineError.integrity("taken \(takenCount) + free \(freePages.count) != \(taken.count) pages")
        }
    }
}
