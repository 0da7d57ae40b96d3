// Tells Bastion the browser's offset from UTC (minutes east), so dates on its pages are
// shown in the reader's time zone; without it they are shown in UTC, with the zone named.
(() => {
  const offset = -new Date().getTimezoneOffset();
  if (!document.cookie.split("; ").includes(`bastion_tz=${offset}`)) {
    document.cookie = `bastion_tz=${offset}; Path=/; Max-Age=31536000; SameSite=Lax`;
  }
})();
