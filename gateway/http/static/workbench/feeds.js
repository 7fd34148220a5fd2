// Which files each department reports (its feeds). The API exposes no feed list, so this is
// the table of the feeds shipped in adapters/mappings/*.toml ([feed] department, name, title);
// tests/test_workbench.py checks it against those files. Feeds a deployment adds with its own
// mapping files (RELIEF_MAPPINGS_DIR) appear too once one batch of them exists: the upload
// form also offers every feed name the batches API reports for the department.

export const FEEDS = {
  civil_affairs: { identities: "民政救助对象名单" },
  rural_revitalization: { identities: "乡村振兴监测帮扶对象名单" },
  medical_insurance: { enrollments: "医保参保信息", settlements: "医保结算信息" },
  health: { vital_events: "出生死亡信息" },
  public_security: { household_registration: "户籍人口信息" },
  disabled_federation: { certificates: "残疾人证信息" },
};

/** The feeds of `department` (code in lower case): [[name, title], …]. */
export function feedsOf(department, seen = []) {
  const own = { ...(FEEDS[String(department).toLowerCase()] || {}) };
  for (const feed of seen) if (feed && !own[feed]) own[feed] = feed;
  return Object.entries(own);
}

export function feedTitle(department, feed) {
  const own = FEEDS[String(department).toLowerCase()] || {};
  return own[feed] ? `${own[feed]} (${feed})` : feed;
}
