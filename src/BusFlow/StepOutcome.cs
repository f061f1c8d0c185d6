namespace BusFlow;

/// <summary>What one step attempt ended with: its report to the saga (a ReportStep* message) and the effects it enlisted (none when it failed).</summary>
public sealed record StepOutcome(object Report, IReadOnlyList<Func<StepCommitContext, Task>> Effects);
