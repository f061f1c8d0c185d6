namespace BusFlow.Host;

/// <summary>
/// What this process runs (<c>BusFlow:Roles</c>, comma-separated): <c>edge</c> (API, WebSockets,
/// dashboard), <c>saga</c> (the pipeline state machine), <c>worker</c> (the sample step workers).
/// All three by default; split them to scale each on its own.
/// </summary>
public sealed record HostRoles(bool Edge, bool Saga, bool Worker)
{
    public const string Setting = "BusFlow:Roles";

    public static HostRoles Read(IConfiguration configuration)
    {
        var text = configuration[Setting];
        if (string.IsNullOrWhiteSpace(text))
        {
            return new HostRoles(true, true, true);
        }

        var roles = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var unknown = roles.Where(r => r is not ("edge" or "saga" or "worker")).ToList();
        if (unknown.Count > 0 || roles.Length == 0)
        {
            throw new InvalidOperationException($"{Setting} is '{text}': use a comma-separated list of edge, saga and worker (unknown: {string.Join(", ", unknown)}).");
        }

        return new HostRoles(roles.Contains("edge"), roles.Contains("saga"), roles.Contains("worker"));
    }

    public override string ToString() => string.Join(",", new[] { Edge ? "edge" : null, Saga ? "saga" : null, Worker ? "worker" : null }.Where(r => r is not null));
}
