/// Words the generated world is made of. Some entries carry quotes, non-ASCII letters and an emoji on purpose:
/// a client must carry them through JSON and into activity texts unchanged.
enum Vocabulary {
    static let organizations = ["acme-labs", "northwind", "globex", "initech", "umbrella-dev"]
    static let projects = [
        "atlas", "beacon", "comet", "delta", "ember", "fjord", "granite", "harbor", "iris", "juniper", "kestrel",
        "lumen", "meridian", "nimbus", "orbit", "pylon", "quartz", "relay", "summit", "tundra",
    ]
    static let collaborators = [
        "ada-sim", "grace-sim", "linus-sim", "margaret-sim", "dennis-sim", "barbara-sim", "ken-sim", "radia-sim",
    ]
    static let verbs = [
        "Fix", "Add", "Improve", "Refactor", "Document", "Remove", "Speed up", "Handle", "Support", "Clean up",
    ]
    static let topics = [
        "crash when syncing large repositories", "retry logic for flaky uploads", "dark mode in settings",
        "pagination of search results", "timezone handling in reports", "memory leak in the cache layer",
        "login flow on slow networks", "CSV export of invoices", "webhook signature checks",
        "error messages for invalid config", "“smart quotes” in titles", "emoji in commit messages 🚀",
        "the \"quiet\" flag", "naïve date parsing", "build on Linux arm64", "rate limit handling",
    ]
    static let bodies = [
        "Steps to reproduce are in the attached log.",
        "This has been bothering users since the last release.",
        "A small change, but it touches the public API.",
        "See the discussion in the weekly sync notes.",
        "Found while profiling the nightly job — it's 3× slower than it should be.",
        "No behaviour change intended; tests cover the old paths.",
    ]
    static let comments = [
        "Looks good to me, just one nit.",
        "I can reproduce this on main.",
        "Could we add a test for this case?",
        "Rebased on the latest main.",
        "Thanks! Merging once CI is green.",
        "Is this still happening after yesterday's deploy?",
        "Left a few suggestions inline — nothing blocking.",
    ]
    static let mentions = [
        "@{user} can you take a look at this?",
        "cc @{user} — this touches your area.",
        "@{user} what do you think about the second approach?",
    ]
    static let discussionTitles = ["Roadmap for the next quarter", "RFC: new plugin API", "Show and tell"]
    static let checkTitles = ["CI workflow run failed for main", "Nightly build succeeded", "Lint run cancelled"]
    static let files = ["Sources/App/main.swift", "Sources/Core/Cache.swift", "README.md", "Tests/CoreTests.swift"]
}
