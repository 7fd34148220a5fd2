// Every GraphQL document the dashboard sends. Aggregates only: `me` and `statistics`. None of
// them names a person, a person list (coverage's notEnrolled, persons, person) or a person
// field (idNumber, name), and tests/test_dashboard.py holds this file to that.
// `total` is the region itself (groupBy its own level), `children` one level below.

export const ME = `
query DashboardMe {
  me { subject department level region roles }
}`;

const COVERAGE_CELL = `regionCode population populationSuppressed enrolled enrolledSuppressed rate meetsTarget`;

export const COVERAGE = `
query DashboardCoverage($prefix: String!, $own: RegionLevel!, $child: RegionLevel!, $year: Int!) {
  total: statistics(regionPrefix: $prefix, groupBy: $own) {
    minCellSize
    coverage(year: $year) { year referenceDate target regions { ${COVERAGE_CELL} } }
  }
  children: statistics(regionPrefix: $prefix, groupBy: $child) {
    coverage(year: $year) { regions { ${COVERAGE_CELL} } }
  }
  counties: statistics(regionPrefix: $prefix, groupBy: COUNTY) {
    coverage(year: $year) { regions { ${COVERAGE_CELL} } }
  }
}`;

const WARNING_CELL = `regionCode rule month count suppressed`;

export const WARNINGS = `
query DashboardWarnings($prefix: String!, $own: RegionLevel!, $child: RegionLevel!, $year: Int!) {
  total: statistics(regionPrefix: $prefix, groupBy: $own) {
    minCellSize
    warnings(year: $year) { ${WARNING_CELL} }
  }
  children: statistics(regionPrefix: $prefix, groupBy: $child) {
    warnings(year: $year) { ${WARNING_CELL} }
  }
}`;

const TASK_CELL = `regionCode department kind open openSuppressed overdue overdueSuppressed`;

export const TASKS = `
query DashboardTasks($prefix: String!, $own: RegionLevel!, $child: RegionLevel!) {
  total: statistics(regionPrefix: $prefix, groupBy: $own) { minCellSize tasks { ${TASK_CELL} } }
  children: statistics(regionPrefix: $prefix, groupBy: $child) { tasks { ${TASK_CELL} } }
}`;

export const SHARING = `
query DashboardSharing($prefix: String!, $own: RegionLevel!, $from: Date!, $to: Date!) {
  total: statistics(regionPrefix: $prefix, groupBy: $own) {
    sharing(from: $from, to: $to) {
      reads { department month requests personTimes }
      provided { department month batches rowsReceived rowsAccepted }
    }
  }
}`;
