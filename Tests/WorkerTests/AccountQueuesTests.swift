import Testing
@testable import Worker

@Suite struct AccountQueuesTests {
    @Test func oneAccountRunsStrictlyOneJobAtATime() {
        var queues = AccountQueues<Int>(concurrency: 8)
        let v1 = queues.enqueue(1, account: "a")
        #expect(v1 == 1)
        let v2 = queues.enqueue(2, account: "a")
        #expect(v2 == nil)
        let v3 = queues.enqueue(3, account: "a")
        #expect(v3 == nil)
        let next = queues.finished(account: "a")
        #expect(next.map(\.item) == [2])
        let v4 = queues.finished(account: "a")
        #expect(v4.map(\.item) == [3])
        let v5 = queues.finished(account: "a")
        #expect(v5.isEmpty)
        #expect(queues.isIdle)
    }

    @Test func concurrencyBoundsRunningAccountsAndServesInArrivalOrder() {
        var queues = AccountQueues<String>(concurrency: 2)
        let v6 = queues.enqueue("a1", account: "a")
        #expect(v6 == "a1")
        let v7 = queues.enqueue("b1", account: "b")
        #expect(v7 == "b1")
        let v8 = queues.enqueue("c1", account: "c")
        #expect(v8 == nil)
        let v9 = queues.enqueue("a2", account: "a")
        #expect(v9 == nil)
        let v10 = queues.enqueue("d1", account: "d")
        #expect(v10 == nil)
        #expect(queues.runningCount == 2)
        // a finishes: c arrived before a's second job became ready, so c goes first.
        let v11 = queues.finished(account: "a")
        #expect(v11.map(\.item) == ["c1"])
        let v12 = queues.finished(account: "b")
        #expect(v12.map(\.item) == ["d1"])
        let v13 = queues.finished(account: "c")
        #expect(v13.map(\.item) == ["a2"])
        #expect(queues.runningCount == 2)
    }

    @Test func removingWaitingJobsOfRevokedPartitions() {
        var queues = AccountQueues<(partition: Int, n: Int)>(concurrency: 1)
        _ = queues.enqueue((0, 1), account: "a")
        _ = queues.enqueue((1, 2), account: "b")
        _ = queues.enqueue((0, 3), account: "c")
        let removed = queues.removeWaiting { $0.partition == 1 }
        #expect(removed.map(\.n) == [2])
        let v14 = queues.finished(account: "a")
        #expect(v14.map(\.item.n) == [3])
    }

    @Test("a lane at its limit waits without a worker slot; other lanes pass it, oldest first")
    func laneLimits() {
        var queues = AccountQueues<String>(concurrency: 3, laneLimits: ["slow": 1])
        #expect(queues.enqueue("s1", account: "s1", lane: "slow") == "s1")
        #expect(queues.enqueue("s2", account: "s2", lane: "slow") == nil, "the lane is full")
        #expect(queues.enqueue("s3", account: "s3", lane: "slow") == nil)
        #expect(queues.enqueue("g1", account: "g1", lane: "github") == "g1", "a worker slot was still free")
        #expect(queues.enqueue("g2", account: "g2", lane: "github") == "g2")
        #expect(queues.enqueue("g3", account: "g3", lane: "github") == nil, "the worker is full")
        #expect(queues.finished(account: "g1").map(\.item) == ["g3"], "s2 is older but its lane is full")
        #expect(queues.finished(account: "s1").map(\.item) == ["s2"])
        #expect(queues.runningCount(lane: "slow") == 1)
    }
}
