using System.Reflection;
using System.Text.Json;
using BusFlow.Contracts;

namespace BusFlow.Store.Tests.Support;

/// <summary>
/// A pipeline state with every settable property of it, its steps and their items set to a
/// value other than the default. Code that copies or projects a state property by property is
/// checked against it, so a property added later and not copied fails that check; a property of
/// a type this helper does not know fails here first.
/// </summary>
public static class FilledStates
{
    public static PipelineState Pipeline() => Filled<PipelineState>();

    /// <summary>The state as JSON, for comparing two states property by property.</summary>
    public static string Json(PipelineState state) => JsonSerializer.Serialize(state);

    private static T Filled<T>()
        where T : new()
    {
        var value = new T();
        foreach (var property in typeof(T).GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanWrite))
        {
            property.SetValue(value, ValueFor(property));
        }

        return value;
    }

    private static object ValueFor(PropertyInfo property)
    {
        var type = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
        return type switch
        {
            _ when type == typeof(string) => "x-" + property.Name,
            _ when type == typeof(Guid) => Guid.NewGuid(),
            _ when type == typeof(int) => 7,
            _ when type == typeof(long) => 7L,
            _ when type == typeof(DateTimeOffset) => new DateTimeOffset(2026, 12, 2, 10, 0, 0, TimeSpan.Zero),
            _ when type == typeof(JsonElement) => JsonSerializer.SerializeToElement(new { of = property.Name }),
            _ when type == typeof(StepError) => new StepError("kind-" + property.Name, "message"),
            _ when type == typeof(Dictionary<string, string>) => new Dictionary<string, string> { ["tag"] = property.Name },
            _ when type == typeof(List<StepRun>) => new List<StepRun> { Filled<StepRun>() },
            _ when type == typeof(List<WorkItem>) => new List<WorkItem> { Filled<WorkItem>() },
            { IsEnum: true } => Enum.GetValues(type).Cast<object>().Last(),
            _ => throw new NotSupportedException($"{property.DeclaringType!.Name}.{property.Name} is a {type.Name}: give FilledStates a value for it"),
        };
    }
}
