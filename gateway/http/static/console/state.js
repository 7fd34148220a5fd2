// What the signed-in page knows: who the administrator is, in which role (security_admin,
// audit_admin or system_admin: one of them, 三权分立), and which policy version is in force.

export const session = { me: null, role: null, version: null };

const versionListeners = new Set();

export function onVersion(listener) {
  versionListeners.add(listener);
}

export function setVersion(version) {
  if (version === null || version === undefined || version === session.version) return;
  session.version = version;
  for (const listener of versionListeners) listener(version);
}

export function isProvinceOfficer() {
  return String(session.me?.level || "").toUpperCase() === "PROVINCE";
}
