// Chinese names for the API's codes (DOMAIN.md; rule codes from gateway/data/rules.toml).

export const DEPARTMENTS = {
  MEDICAL_INSURANCE: "医保局",
  CIVIL_AFFAIRS: "民政局",
  RURAL_REVITALIZATION: "乡村振兴局",
  HEALTH: "卫生健康委",
  PUBLIC_SECURITY: "公安局",
  DISABLED_FEDERATION: "残联",
  HUMAN_RESOURCES: "人社局",
  BIG_DATA: "大数据局",
};

export const LEVELS = { PROVINCE: "省级", CITY: "市级", COUNTY: "县级" };

export const TASK_KINDS = {
  WARNING_REVIEW: "高额费用预警核实",
  IDENTITY_VERIFICATION: "新增身份核验",
};

// Short names for the charts; the full wording is in rules.toml and the warning itself.
export const RULES = {
  SHANDONG_LOW_INCOME_50: "低保边缘/监测对象 >50% 人均可支配收入",
  SHANDONG_ORDINARY_150: "普通参保人员 >150% 人均可支配收入",
  SHANXI_LOW_INCOME_6000: "低收入和脱贫人口 >0.6万元",
  SHANXI_OTHERS_20000: "其他参保居民 >2万元",
  ANHUI_INPATIENT_3: "1年内住院3次以上 (市级关注)",
  ANHUI_INPATIENT_5: "1年内住院5次以上 (省级关切)",
};

export const departmentName = (code) => DEPARTMENTS[code] || code;
export const levelName = (code) => LEVELS[String(code).toUpperCase()] || code;
export const ruleName = (code) => RULES[code] || code;
export const taskKindName = (code) => TASK_KINDS[code] || code;
