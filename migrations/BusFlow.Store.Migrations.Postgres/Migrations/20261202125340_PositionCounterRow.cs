using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace BusFlow.Store.Migrations.Postgres.Migrations
{
    /// <inheritdoc />
    public partial class PositionCounterRow : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            // The counter continues from where the outbox lease's row left it (rows are already positioned up to there).
            migrationBuilder.Sql("""
                INSERT INTO busflow_leases ("Name", "DeliveredUpTo", "ExpiresAt", "LastPosition", "Owner")
                SELECT 'positions', 0, "ExpiresAt", "LastPosition", NULL FROM busflow_leases WHERE "Name" = 'outbox'
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            // An older version counts on the outbox lease's row again: give it the counter.
            migrationBuilder.Sql("""
                UPDATE busflow_leases SET "LastPosition" = (SELECT "LastPosition" FROM busflow_leases WHERE "Name" = 'positions') WHERE "Name" = 'outbox'
                """);
            migrationBuilder.DeleteData(
                table: "busflow_leases",
                keyColumn: "Name",
                keyValue: "positions");
        }
    }
}
