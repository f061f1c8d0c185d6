using System;
using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql.EntityFrameworkCore.PostgreSQL.Metadata;

#nullable disable

namespace BusFlow.Store.Migrations.Postgres.Migrations
{
    /// <inheritdoc />
    public partial class Initial : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "busflow_events",
                columns: table => new
                {
                    Id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
                    Position = table.Column<long>(type: "bigint", nullable: true),
                    PipelineId = table.Column<Guid>(type: "uuid", nullable: false),
                    Seq = table.Column<long>(type: "bigint", nullable: false),
                    Type = table.Column<string>(type: "character varying(64)", maxLength: 64, nullable: false),
                    Timestamp = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    Payload = table.Column<string>(type: "text", nullable: false),
                    DeliveredAt = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_busflow_events", x => x.Id);
                });

            migrationBuilder.CreateTable(
                name: "busflow_idempotency_keys",
                columns: table => new
                {
                    Scope = table.Column<string>(type: "character varying(64)", maxLength: 64, nullable: false),
                    Key = table.Column<string>(type: "character varying(256)", maxLength: 256, nullable: false),
                    RequestHash = table.Column<string>(type: "character varying(128)", maxLength: 128, nullable: false),
                    PipelineId = table.Column<Guid>(type: "uuid", nullable: false),
                    CreatedAt = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_busflow_idempotency_keys", x => new { x.Scope, x.Key });
                });

            migrationBuilder.CreateTable(
                name: "busflow_inbox",
                columns: table => new
                {
                    MessageId = table.Column<Guid>(type: "uuid", nullable: false),
                    Consumer = table.Column<string>(type: "character varying(256)", maxLength: 256, nullable: false),
                    ReceivedAt = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_busflow_inbox", x => new { x.MessageId, x.Consumer });
                });

            migrationBuilder.CreateTable(
                name: "busflow_leases",
                columns: table => new
                {
                    Name = table.Column<string>(type: "character varying(64)", maxLength: 64, nullable: false),
                    Owner = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: true),
                    ExpiresAt = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    LastPosition = table.Column<long>(type: "bigint", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_busflow_leases", x => x.Name);
                });

            migrationBuilder.CreateTable(
                name: "busflow_outbox",
                columns: table => new
                {
                    Id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
                    MessageId = table.Column<Guid>(type: "uuid", nullable: false),
                    PipelineId = table.Column<Guid>(type: "uuid", nullable: false),
                    Destination = table.Column<string>(type: "character varying(512)", maxLength: 512, nullable: true),
                    MessageType = table.Column<string>(type: "character varying(256)", maxLength: 256, nullable: false),
                    Body = table.Column<string>(type: "text", nullable: false),
                    CreatedAt = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    DeliveredAt = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_busflow_outbox", x => x.Id);
                });

            migrationBuilder.CreateTable(
                name: "busflow_pipelines",
                columns: table => new
                {
                    PipelineId = table.Column<Guid>(type: "uuid", nullable: false),
                    CurrentState = table.Column<string>(type: "character varying(64)", maxLength: 64, nullable: false),
                    Version = table.Column<int>(type: "integer", nullable: false),
                    Status = table.Column<string>(type: "character varying(16)", maxLength: 16, nullable: false),
                    Definition = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: false),
                    Input = table.Column<string>(type: "text", nullable: true),
                    Tags = table.Column<string>(type: "text", nullable: false),
                    ParentPipelineId = table.Column<Guid>(type: "uuid", nullable: true),
                    ParentStepName = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: true),
                    LastSeq = table.Column<long>(type: "bigint", nullable: false),
                    StartedAt = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    FinishedAt = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true),
                    NextDeadline = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true),
                    Error = table.Column<string>(type: "text", nullable: true),
                    FailedStep = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: true),
                    Steps = table.Column<string>(type: "text", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_busflow_pipelines", x => x.PipelineId);
                });

            migrationBuilder.CreateTable(
                name: "busflow_suspensions",
                columns: table => new
                {
                    SuspendId = table.Column<Guid>(type: "uuid", nullable: false),
                    PipelineId = table.Column<Guid>(type: "uuid", nullable: false),
                    StepName = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: false),
                    ItemIndex = table.Column<int>(type: "integer", nullable: true),
                    CreatedAt = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    ExpiresAt = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true),
                    ClosedAt = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_busflow_suspensions", x => x.SuspendId);
                });

            migrationBuilder.InsertData(
                table: "busflow_leases",
                columns: new[] { "Name", "ExpiresAt", "LastPosition", "Owner" },
                values: new object[] { "outbox", new DateTimeOffset(new DateTime(1970, 1, 1, 0, 0, 0, 0, DateTimeKind.Unspecified), new TimeSpan(0, 0, 0, 0, 0)), 0L, null });

            migrationBuilder.CreateIndex(
                name: "IX_busflow_events_DeliveredAt",
                table: "busflow_events",
                column: "DeliveredAt");

            migrationBuilder.CreateIndex(
                name: "IX_busflow_events_PipelineId_Seq",
                table: "busflow_events",
                columns: new[] { "PipelineId", "Seq" },
                unique: true);

            migrationBuilder.CreateIndex(
                name: "IX_busflow_events_Position",
                table: "busflow_events",
                column: "Position",
                unique: true);

            migrationBuilder.CreateIndex(
                name: "IX_busflow_inbox_ReceivedAt",
                table: "busflow_inbox",
                column: "ReceivedAt");

            migrationBuilder.CreateIndex(
                name: "IX_busflow_outbox_DeliveredAt",
                table: "busflow_outbox",
                column: "DeliveredAt");

            migrationBuilder.CreateIndex(
                name: "IX_busflow_outbox_PipelineId",
                table: "busflow_outbox",
                column: "PipelineId");

            migrationBuilder.CreateIndex(
                name: "IX_busflow_pipelines_FinishedAt",
                table: "busflow_pipelines",
                column: "FinishedAt");

            migrationBuilder.CreateIndex(
                name: "IX_busflow_pipelines_NextDeadline",
                table: "busflow_pipelines",
                column: "NextDeadline");

            migrationBuilder.CreateIndex(
                name: "IX_busflow_pipelines_ParentPipelineId",
                table: "busflow_pipelines",
                column: "ParentPipelineId");

            migrationBuilder.CreateIndex(
                name: "IX_busflow_suspensions_PipelineId",
                table: "busflow_suspensions",
                column: "PipelineId");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "busflow_events");

            migrationBuilder.DropTable(
                name: "busflow_idempotency_keys");

            migrationBuilder.DropTable(
                name: "busflow_inbox");

            migrationBuilder.DropTable(
                name: "busflow_leases");

            migrationBuilder.DropTable(
                name: "busflow_outbox");

            migrationBuilder.DropTable(
                name: "busflow_pipelines");

            migrationBuilder.DropTable(
                name: "busflow_suspensions");
        }
    }
}
