import Testing
import Worker

@Suite struct AccountQueuesTests {
    @Test func oneAccountRunsStrictlyOneJobAtATime() {
        var queues = AccountQueues<Int>(concurrency: 8)
        #expect(queues.enqueue(1, account: "a") == 1)
        #expect(queues.enqueue(2, account: "a") == nil)
        #expect(queues.enqueue(3, account: "a") == nil)
        let next = queues.finished(account: "a")
        #expect(next.map(\.item) == [2])
        #expect(queues.finished(account: "a").map(\.item) == [3])
        #expect(queues.finished(account: "a").isEmpty)
        #expect(queues.isIdle)
    }

    @Test func concurrencyBoundsRunningAccountsAndServesInArrivalOrder() {
        var queues = AccountQueues<String>(concurrency: 2)
        #expect(queues.enqueue("a1", account: "a") == "a1")
        #expect(queues.enqueue("b1", account: "b") == "b1")
        #expect(queues.enqueue("c1", account: "c") == nil)
        #expect(queues.enqueue("a2", account: "a") == nil)
        #expect(queues.enqueue("d1", account: "d") == nil)
        #expect(queues.runningCount == 2)
        // a finishes: c arrived before a's second job became ready, so c goes first.
        #expect(queues.finished(account: "a").map(\.item) == ["c1"])
        #expect(queues.finished(account: "b").map(\.item) == ["d1"])
        #expect(queues.finished(account: "c").map(\.item) == ["a2"])
        #expect(queues.runningCount == 2)
    }

    @Test func removingWaitingJobsOfRevokedPartitions() {
        var queues = AccountQueues<(partition: Int, n: Int)>(concurrency: 1)
        _ = queues.enqueue((0, 1), account: "a")
        _ = queues.enqueue((1, 2), account: "b")
        _ = queues.enqueue((0, 3), account: "c")
        let removed = queues.removeWaiting { $0.partition == 1 }
        #expect(removed.map(\.n) == [2])
        #expect(queues.finished(account: "a").map(\.item.n) == [3])
    }
}
