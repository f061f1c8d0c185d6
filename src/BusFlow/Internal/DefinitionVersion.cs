using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;

namespace BusFlow.Internal;

/// <summary>
/// A definition's version when none is given: the first 12 hex digits of the SHA-256 of a canonical
/// description of what decides a pipeline (every step's kind, worker, child, edges, outputs, map
/// source and policies, and the pipeline's parallelism). The input schema is left out: it is checked
/// before a start and decides nothing after it. Two processes built from the same declaration get
/// the same version; a change to any of these gets another.
/// </summary>
internal static partial class DefinitionVersion
{
    public static string Of(string name, IReadOnlyList<StepDefinition> steps, int maxParallelism)
    {
        var text = new StringBuilder();
        Line(text, "pipeline", name, maxParallelism);
        foreach (var s in steps)
        {
            Line(text, "step", s.Name, s.Kind, s.Worker, s.ChildDefinition, s.OutputName, string.Join(',', s.Consumes), string.Join(',', s.DependsOn), s.MapSource, s.ChildInputFrom);
            Line(text, "retry", s.Retry.MaxAttempts, s.Retry.InitialDelay.Ticks, s.Retry.Multiplier, s.Retry.MaxDelay?.Ticks);
            Line(text, "limits", s.Timeout?.Ticks, s.SuspensionTimeout.Ticks, s.OnFailure, s.MaxParallelism, s.MaxItems);
        }

        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())))[..12];
    }

    public static bool IsValid(string version) => Pattern().IsMatch(version);

    /// <summary>One line of fields, each length-prefixed so that no choice of names can make two shapes read alike.</summary>
    private static void Line(StringBuilder text, params object?[] fields)
    {
        foreach (var field in fields)
        {
            if (Convert.ToString(field, CultureInfo.InvariantCulture) is { } value)
            {
                text.Append(CultureInfo.InvariantCulture, $"{value.Length}:{value};");
            }
            else
            {
                text.Append("null;");
            }
        }

        text.Append('\n');
    }

    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\z")]
    private static partial Regex Pattern();
}
